# The filesystem state machine (fssm helper): applies fspb.Commands to a
# node's local tree and reads it by id. Library raftfs_fs; no FUSE, no Raft.
add_library(raftfs_fs STATIC
  tree_map.c
  tree.c
  tree_compare.c
  sm.c
  sm_journal.c
  sm_decode.c
  sm_reset.c
  sm_direct.c
  sm_read.c
  apply.c
  sm_image_cow.c
  sm_image_format.c
  sm_image_install.c
  sm_image_make.c
  sm_image_meta.c
  sm_id_hw.c
  sm_id_known.c
  sm_starts.c
  snap_node.c
  cmd_merge.c
  test_gate.c
)
target_include_directories(raftfs_fs PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(raftfs_fs PUBLIC raftfs_proto raftfs_node_base Threads::Threads)

# The raftfs program (runtime helper): fs/main.c and the fs/cli_*.c
# subcommands, on the node runtime (consensus/runtime.cmake).
if(TARGET raftfs_node)
  # The FUSE mount (fuse helper): the state machine as a node_sm, the
  # proposer, the low-level operations and the mount's main loop.
  add_library(raftfs_mount STATIC fs_node.c fs_plug.c fuse_inval.c fuse_fs.c fuse_ops.c fuse_io.c
    fuse_close.c fuse_write.c fuse_behind_state.c fuse_behind_ops.c
    fuse_behind_deleg.c fuse_grant.c fuse_listed.c fuse_guard.c fuse_mount.c fuse_readahead.c
    fuse_run.c fs_release.c svc_notify.c svc_start.c)
  target_include_directories(raftfs_mount PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(raftfs_mount PUBLIC raftfs_fs raftfs_node PkgConfig::FUSE3)

  add_executable(raftfs main.c cli_node.c cli_status.c cli_local.c cli_kv.c local_cluster.c
    local_ports.c cli_verify.c tree_verify.c snap_cli.c cli_member.c cli_config.c cli_version.c)
  target_link_libraries(raftfs PRIVATE raftfs_node raftfs_mount)
endif()
