pub mod statefile;
pub mod watch;
