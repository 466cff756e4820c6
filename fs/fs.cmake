# The raftfs program (runtime helper): fs/main.c and the fs/cli_*.c
# subcommands, on the node runtime (consensus/runtime.cmake).
if(TARGET raftfs_node)
  add_executable(raftfs main.c cli_node.c cli_status.c cli_local.c cli_kv.c local_cluster.c)
  target_link_libraries(raftfs PRIVATE raftfs_node)
endif()
