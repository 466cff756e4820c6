# The node runtime, included by consensus/CMakeLists.txt.
# raftfs_node_base: the parts that need no Raft core (config, framing,
# envelope, duplicate table, logging, the blocking client) — unit-tested
# on their own. raftfs_node: the libuv loop driving the core, the TCP
# transport and the replicated test state machine.
add_library(raftfs_node_base STATIC
  client.c
  config.c
  dedup.c
  node_admit.c
  envelope.c
  frame.c
  runtime_log.c
)
target_include_directories(raftfs_node_base PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(raftfs_node_base PUBLIC raftfs_proto PkgConfig::INIH)

# Built once the Raft core and the store it drives exist.
if(EXISTS ${CMAKE_SOURCE_DIR}/consensus/raft.c AND EXISTS ${CMAKE_SOURCE_DIR}/store/store.c)
  add_library(raftfs_node STATIC
    kvsm.c
    node.c
    node_admit_hooks.c
    node_elide.c
    node_held.c
    node_pending.c
    node_members.c
    node_members_request.c
    node_persist.c
    node_snapshot.c
    node_stages.c
    snapshot_recv.c
    snapshot_stream.c
    transport.c
  )
  target_link_libraries(raftfs_node PUBLIC raftfs_node_base raftfs_raft raftfs_store
    PkgConfig::LIBUV Threads::Threads)
endif()
