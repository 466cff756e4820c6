# Finds every system library raftfs builds on. Each failure names the Debian
# package that provides what is missing (scripts/install-deps installs them all).
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config (or run scripts/install-deps)")
endif()

# raftfs_require(<target-prefix> <pkg-config module> <debian package>)
function(raftfs_require prefix module debian_package)
  pkg_check_modules(${prefix} QUIET IMPORTED_TARGET GLOBAL ${module})
  if(NOT ${prefix}_FOUND)
    message(FATAL_ERROR
      "missing library '${module}': apt-get install ${debian_package} (or run scripts/install-deps)")
  endif()
  message(STATUS "found ${module} ${${prefix}_VERSION}")
endfunction()

raftfs_require(FUSE3    fuse3         libfuse3-dev)
raftfs_require(LIBUV    libuv         libuv1-dev)
raftfs_require(ROCKSDB  rocksdb       librocksdb-dev)
raftfs_require(PROTOBUFC libprotobuf-c libprotobuf-c-dev)
raftfs_require(INIH     inih          libinih-dev)
raftfs_require(CMOCKA   cmocka        libcmocka-dev)

find_program(PROTOC_C NAMES protoc-c)
if(NOT PROTOC_C)
  message(FATAL_ERROR "protoc-c not found: apt-get install protobuf-c-compiler (or run scripts/install-deps)")
endif()

find_package(Threads REQUIRED)
