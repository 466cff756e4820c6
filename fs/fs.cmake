# The filesystem state machine (fssm helper): applies fspb.Commands to a
# node's local tree and reads it by id. Library raftfs_fs; no FUSE, no Raft.
add_library(raftfs_fs STATIC
  tree_map.c
  tree.c
  tree_compare.c
  sm.c
  sm_journal.c
  sm_dedup.c
  sm_read.c
  apply.c
)
target_include_directories(raftfs_fs PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(raftfs_fs PUBLIC raftfs_proto Threads::Threads)

# The raftfs program (runtime helper): fs/main.c and the fs/cli_*.c
# subcommands, on the node runtime (consensus/runtime.cmake).
if(TARGET raftfs_node)
  add_executable(raftfs main.c cli_node.c cli_status.c cli_local.c cli_kv.c local_cluster.c)
  target_link_libraries(raftfs PRIVATE raftfs_node)
endif()
