//! freezefs's integration tests: one test crate, so that the helpers are
//! compiled once and linked once. Each module shows one part of the contract
//! on real loop-mounted filesystems (as root; they fail rather than skip
//! without root or loop devices), or checks a rule of the project itself.

mod private_mounts;
mod qemu_ga;
mod support;
mod systemd_sandbox;

mod abuse;
mod beyond;
mod broken_state;
mod c_api;
mod command_messages;
mod commands;
mod contract;
mod debian_packages;
mod errnos;
mod fast_path;
mod fuzz;
mod fuzz_c_api;
mod fuzzkit;
mod header;
mod holder;
mod hold_hooks;
mod hook_pairs;
mod keepers;
mod hooks;
mod host_guard;
mod hostile;
mod hostile_clients;
mod kernel_truth;
mod layering;
mod legacy;
mod mariadb;
mod mariadb_server;
mod mariadb_snapshot;
mod one_command;
mod packaging;
mod postgres;
mod reliability;
mod robustness;
mod setup_scripts;
mod shim;
mod shim_protected;
mod socket_activation;
mod under_systemd;
mod unsettled_watchers;
