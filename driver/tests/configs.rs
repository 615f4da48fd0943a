//! The shipped configs load, and `configs/demo.toml` documents the real defaults.

mod common;

use driver::config::DriverConfig;

#[test]
fn demo_config_is_the_embedded_default_with_every_default_spelt_out() {
    let demo = DriverConfig::load(&common::repo().join("configs/demo.toml")).unwrap();
    assert!(demo.baseline.is_embedded());
    assert_eq!(
        demo,
        DriverConfig::default(),
        "demo.toml and the defaults disagree"
    );
}

#[test]
fn example_cluster_config_names_a_remote_endpoint_and_an_api_key_variable() {
    let path = common::repo().join("configs/example-cluster.toml");
    let config = DriverConfig::load(&path).unwrap();
    assert!(!config.baseline.is_embedded());
    assert!(config.baseline.url.starts_with("https://"));
    assert_eq!(
        config.baseline.api_key_env().as_deref(),
        Some("BASELINE_API_KEY")
    );
    assert!(config.baseline.tokens_per_minute > 0);
    assert_eq!(
        config.cluster.profile,
        std::path::Path::new("slurm/profiles/example-cluster.toml")
    );
    assert_eq!(config.cluster.launcher, driver::config::LauncherKind::Slurm);
}
