//! A run's results: the jobs' artifacts read and checked ([`artifact`]), merged beside the
//! baseline into the master table ([`master`]) by the [`collector::ResultCollector`].

pub mod artifact;
pub mod collector;
pub mod master;
