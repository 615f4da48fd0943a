//! The layout rules every strategy is held to: what the model's heads, KV heads and layers and
//! the cluster's nodes and GPUs allow. Checked before anything is submitted, and again for the
//! changed settings of a retry.

use super::model::ModelFacts;
use super::strategy::{EngineArgs, StrategyError};
use crate::slurm::profile::ClusterShape;

/// Layers split as evenly as possible, the remainder to the earlier stages (the engine's default).
pub fn even_layer_split(layers: usize, stages: usize) -> Vec<usize> {
    if stages == 0 {
        return Vec::new();
    }
    (0..stages)
        .map(|s| layers / stages + usize::from(s < layers % stages))
        .collect()
}

/// Refuses layouts the model or the cluster cannot hold; the reason says which rule and numbers.
pub fn validate_layout(
    strategy: &'static str,
    args: &EngineArgs,
    model: &ModelFacts,
    cluster: &ClusterShape,
) -> Result<(), StrategyError> {
    let refuse = |reason: String| Err(StrategyError::Invalid { strategy, reason });
    let (tp, pp) = (args.tp, args.pp);
    if tp == 0 || pp == 0 || args.nodes == 0 || args.ranks_per_node == 0 {
        return refuse(format!(
            "tp ({tp}), pp ({pp}), nodes ({}) and ranks per node ({}) must all be at least 1",
            args.nodes, args.ranks_per_node
        ));
    }
    if !model.heads.is_multiple_of(tp) {
        return refuse(format!(
            "tp={tp} does not divide the model's {} attention heads",
            model.heads
        ));
    }
    if !(tp.is_multiple_of(model.kv_heads) || model.kv_heads.is_multiple_of(tp)) {
        return refuse(format!(
            "tp={tp} and the model's {} KV heads: tp must divide the KV heads, or be a multiple of them (each KV head replicated on tp / kv_heads ranks)",
            model.kv_heads
        ));
    }
    if let Some(width) = model.intermediate_size {
        if !width.is_multiple_of(tp) {
            return refuse(format!(
                "tp={tp} does not divide the model's MLP width (intermediate_size {width})"
            ));
        }
    }
    if pp > model.layers {
        return refuse(format!(
            "pp={pp} stages but the model has only {} layers",
            model.layers
        ));
    }
    if args.layer_split.len() != pp
        || args.layer_split.contains(&0)
        || args.layer_split.iter().sum::<usize>() != model.layers
    {
        return refuse(format!(
            "layer split {:?} must have pp={pp} entries, each at least 1, summing to the model's {} layers",
            args.layer_split, model.layers
        ));
    }
    if args.nodes > cluster.nodes {
        return refuse(format!(
            "needs {} nodes but the cluster profile has {}",
            args.nodes, cluster.nodes
        ));
    }
    if args.nodes * args.ranks_per_node != args.world_size() {
        return refuse(format!(
            "tp x pp = {} ranks cannot be placed as {} nodes x {} ranks per node",
            args.world_size(),
            args.nodes,
            args.ranks_per_node
        ));
    }
    if args.ranks_per_node > cluster.gpus_per_node.max(1) {
        return refuse(format!(
            "{} ranks per node but a node has {} GPUs (one rank per GPU)",
            args.ranks_per_node, cluster.gpus_per_node
        ));
    }
    if args.batch_size == 0 || args.micro_batches == Some(0) {
        return refuse("batch size and micro-batches must be at least 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(tp: usize, pp: usize, nodes: usize, rpn: usize, layers: usize) -> EngineArgs {
        EngineArgs {
            tp,
            pp,
            nodes,
            gpus_per_node: rpn,
            ranks_per_node: rpn,
            layer_split: even_layer_split(layers, pp),
            micro_batches: None,
            batch_size: 8,
        }
    }

    #[test]
    fn even_split_gives_the_remainder_to_early_stages() {
        assert_eq!(even_layer_split(80, 16), vec![5; 16]);
        assert_eq!(even_layer_split(30, 4), vec![8, 8, 7, 7]);
        assert_eq!(even_layer_split(4, 4), vec![1; 4]);
    }

    #[test]
    fn kv_heads_may_be_replicated_when_tp_is_a_multiple_of_them() {
        let model = ModelFacts::llama_3_3_70b();
        let cluster = ClusterShape {
            nodes: 2,
            gpus_per_node: 8,
            one_host: false,
        };
        validate_layout("t", &args(16, 1, 2, 8, 80), &model, &cluster).unwrap();
        let smol = ModelFacts {
            heads: 12,
            kv_heads: 4,
            layers: 4,
            ..Default::default()
        };
        // 6 divides 12 heads but is neither a divisor nor a multiple of 4 KV heads.
        let err = validate_layout(
            "t",
            &args(6, 1, 1, 6, 4),
            &smol,
            &ClusterShape {
                nodes: 1,
                gpus_per_node: 8,
                one_host: false,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("KV heads"), "{err}");
    }

    #[test]
    fn impossible_layouts_are_refused_with_the_reason() {
        let model = ModelFacts::llama_3_3_70b();
        let cluster = ClusterShape {
            nodes: 2,
            gpus_per_node: 8,
            one_host: false,
        };
        let cases = [
            (
                args(3, 1, 1, 3, 80),
                "does not divide the model's 64 attention heads",
            ),
            (args(1, 96, 12, 8, 80), "only 80 layers"),
            (
                args(8, 3, 3, 8, 80),
                "needs 3 nodes but the cluster profile has 2",
            ),
            (args(16, 1, 1, 16, 80), "a node has 8 GPUs"),
            (args(8, 2, 1, 8, 80), "cannot be placed"),
        ];
        for (a, want) in cases {
            let err = validate_layout("t", &a, &model, &cluster)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{a:?}: {err}");
        }
        let mut bad_split = args(8, 2, 2, 8, 80);
        bad_split.layer_split = vec![41, 40];
        let err = validate_layout("t", &bad_split, &model, &cluster)
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer split"), "{err}");
    }
}
