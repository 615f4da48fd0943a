//! Parallelism strategies: how the model is spread over the cluster's GPUs. `strategy.rs` holds
//! the trait and the layout rules; one file per strategy derives its layout from a cluster profile
//! and the model.

mod layout;
pub mod model;
pub mod next_config;
pub mod rules;
pub mod strategy;

mod hybrid;
mod pp_across_nodes;
mod tp_across_nodes;
mod tp_single_node;

pub use hybrid::HybridTensorPipeline;
pub use pp_across_nodes::PipelineParallelAcrossNodes;
pub use strategy::{ParallelismStrategy, StrategyError};
pub use tp_across_nodes::TensorParallelAcrossNodes;
pub use tp_single_node::TensorParallelSingleNode;

use crate::slurm::profile::ClusterProfile;
use model::ModelFacts;

/// Every strategy's name, in the order they run.
pub const STRATEGY_NAMES: [&str; 4] = [
    TensorParallelAcrossNodes::NAME,
    PipelineParallelAcrossNodes::NAME,
    TensorParallelSingleNode::NAME,
    HybridTensorPipeline::NAME,
];

/// Builds one strategy by name, derived from the profile and checked against the model.
pub fn strategy_by_name(
    name: &str,
    profile: &ClusterProfile,
    model: &ModelFacts,
) -> Result<Box<dyn ParallelismStrategy>, StrategyError> {
    Ok(match name {
        TensorParallelAcrossNodes::NAME => {
            Box::new(TensorParallelAcrossNodes::from_profile(profile, model)?)
        }
        PipelineParallelAcrossNodes::NAME => {
            Box::new(PipelineParallelAcrossNodes::from_profile(profile, model)?)
        }
        TensorParallelSingleNode::NAME => {
            Box::new(TensorParallelSingleNode::from_profile(profile, model)?)
        }
        HybridTensorPipeline::NAME => Box::new(HybridTensorPipeline::from_profile(profile, model)?),
        other => {
            return Err(StrategyError::Invalid {
                strategy: "unknown",
                reason: format!(
                    "no strategy named `{other}` (known: {})",
                    STRATEGY_NAMES.join(", ")
                ),
            })
        }
    })
}

/// The strategies the profile enables (all four unless `enabled = false`), each checked; the
/// first invalid one is an error, so nothing is submitted for a profile with an impossible layout.
pub fn enabled_strategies(
    profile: &ClusterProfile,
    model: &ModelFacts,
) -> Result<Vec<Box<dyn ParallelismStrategy>>, StrategyError> {
    STRATEGY_NAMES
        .iter()
        .filter(|name| profile.overrides(name).enabled.unwrap_or(true))
        .map(|name| strategy_by_name(name, profile, model))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::profile::StrategyOverrides;
    use std::path::Path;

    fn profile(name: &str) -> ClusterProfile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../slurm/profiles")
            .join(format!("{name}.toml"));
        ClusterProfile::load(&path).unwrap()
    }

    fn layouts(
        profile: &ClusterProfile,
        model: &ModelFacts,
    ) -> Vec<(String, usize, usize, usize, usize)> {
        enabled_strategies(profile, model)
            .unwrap()
            .iter()
            .map(|s| {
                let a = s.engine_args();
                (s.name().to_string(), a.tp, a.pp, a.nodes, a.ranks_per_node)
            })
            .collect()
    }

    #[test]
    fn two_nodes_of_eight_gpus_with_llama_70b_give_tp16_pp16_tp8_and_tp8_pp2() {
        let p = profile("example-cluster");
        let got = layouts(&p, &p.model.facts().unwrap());
        let want = [
            ("tp-across-nodes", 16, 1, 2, 8),
            ("pp-across-nodes", 1, 16, 2, 8),
            ("tp-single-node", 8, 1, 1, 8),
            ("hybrid-tp-pp", 8, 2, 2, 8),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(n, tp, pp, nodes, rpn)| (n.to_string(), *tp, *pp, *nodes, *rpn))
            .collect();
        assert_eq!(got, want);
        let pp = strategy_by_name("pp-across-nodes", &p, &p.model.facts().unwrap()).unwrap();
        assert_eq!(pp.engine_args().layer_split, vec![5; 16]);
        assert_eq!(pp.slurm_constraints().gpus_per_node, Some(8));
    }

    #[test]
    fn the_local_ci_profile_makes_all_four_valid_on_two_nodes_of_two_gpus() {
        let p = profile("local-ci");
        let tiny = ModelFacts {
            heads: 8,
            kv_heads: 4,
            layers: 4,
            intermediate_size: Some(384),
            ..Default::default()
        };
        let got = layouts(&p, &tiny);
        let names: Vec<_> = got.iter().map(|g| (g.1, g.2, g.3, g.4)).collect();
        assert_eq!(
            names,
            vec![(4, 1, 2, 2), (1, 4, 2, 2), (2, 1, 1, 2), (2, 2, 2, 2)]
        );
    }

    #[test]
    fn the_configured_pipeline_depth_is_used() {
        let mut p = profile("example-cluster");
        p.strategies.insert(
            "pp-across-nodes".into(),
            StrategyOverrides {
                pp: Some(4),
                ..Default::default()
            },
        );
        let pp = strategy_by_name("pp-across-nodes", &p, &ModelFacts::llama_3_3_70b()).unwrap();
        let a = pp.engine_args();
        assert_eq!((a.pp, a.nodes, a.ranks_per_node), (4, 2, 2));
        assert_eq!(a.layer_split, vec![20; 4]);
    }

    #[test]
    fn invalid_configurations_are_refused_with_their_reason() {
        let smollm2 = ModelFacts {
            heads: 9,
            kv_heads: 3,
            layers: 30,
            intermediate_size: Some(1536),
            ..Default::default()
        };
        let local = profile("local-ci");
        let err = strategy_by_name("tp-across-nodes", &local, &smollm2)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tp=4 does not divide the model's 9 attention heads"),
            "{err}"
        );

        let mut p = profile("example-cluster");
        p.strategies.insert(
            "pp-across-nodes".into(),
            StrategyOverrides {
                pp: Some(96),
                ..Default::default()
            },
        );
        let err = strategy_by_name("pp-across-nodes", &p, &ModelFacts::llama_3_3_70b())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pp=96 stages but the model has only 80 layers"),
            "{err}"
        );
        assert!(enabled_strategies(&p, &ModelFacts::llama_3_3_70b()).is_err());

        let mut p = profile("example-cluster");
        p.strategies.insert(
            "hybrid-tp-pp".into(),
            StrategyOverrides {
                nodes: Some(4),
                pp: Some(4),
                ..Default::default()
            },
        );
        let err = strategy_by_name("hybrid-tp-pp", &p, &ModelFacts::llama_3_3_70b())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("needs 4 nodes but the cluster profile has 2"),
            "{err}"
        );

        let err = strategy_by_name("sequence-parallel", &p, &ModelFacts::llama_3_3_70b())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no strategy named"), "{err}");
    }
}
