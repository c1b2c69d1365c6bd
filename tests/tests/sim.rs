//! Tests of the cluster simulator's parts (`flt_tests::sim`) and the stable-Rust replay of the
//! fuzz targets. One binary; a file per topic under `tests/tests/sim/`.

#[path = "sim/etcd_differential.rs"]
mod etcd_differential;

#[path = "../../fuzz/src/lib.rs"]
mod fuzz_bodies;

#[path = "sim/fuzz_replay.rs"]
mod fuzz_replay;

#[path = "sim/follower_swarm.rs"]
mod follower_swarm;

#[path = "sim/cluster.rs"]
mod cluster;
