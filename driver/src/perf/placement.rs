//! Where a layout's ranks run, as the engine's topology places them: TP innermost (stage =
//! rank / tp, as Megatron-LM and vLLM do), ranks filling node after node (node = rank /
//! ranks per node). Decides which all-reduces and sends cross the network.

use super::formulas::StageSlice;
use crate::parallelism::strategy::EngineArgs;

/// A layout's stages and the nodes their ranks sit on.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    args: &'a EngineArgs,
}

impl<'a> Placement<'a> {
    pub fn new(args: &'a EngineArgs) -> Self {
        Self { args }
    }

    fn node(&self, rank: usize) -> usize {
        rank / self.args.ranks_per_node.max(1)
    }

    fn ranks_of(&self, stage: usize) -> std::ops::Range<usize> {
        stage * self.args.tp..(stage + 1) * self.args.tp
    }

    /// The tp group of `stage` has ranks on more than one node (its all-reduces use the network).
    pub fn tp_group_spans_nodes(&self, stage: usize) -> bool {
        let ranks = self.ranks_of(stage);
        self.node(ranks.start) != self.node(ranks.end - 1)
    }

    /// Some rank of stage `from` sends to its peer (same TP index) of stage `to` on another node.
    pub fn send_crosses_nodes(&self, from: usize, to: usize) -> bool {
        self.ranks_of(from)
            .zip(self.ranks_of(to))
            .any(|(a, b)| self.node(a) != self.node(b))
    }

    /// Ranks of the first `stages` stages on the busiest host: all of them when every node is
    /// one host (`single_host`), else the most that share one node.
    pub fn busy_ranks_per_host(&self, stages: usize, single_host: bool) -> usize {
        let ranks = 0..(stages.clamp(1, self.args.pp.max(1)) * self.args.tp);
        if single_host {
            return ranks.len();
        }
        let mut per_node = std::collections::BTreeMap::new();
        for rank in ranks {
            *per_node.entry(self.node(rank)).or_insert(0) += 1;
        }
        per_node.into_values().max().unwrap_or(1)
    }

    /// What each stage holds: its layers, the embedding on the first, the LM head on the last.
    pub fn stages(&self) -> Vec<StageSlice> {
        let last = self.args.layer_split.len().saturating_sub(1);
        self.args
            .layer_split
            .iter()
            .enumerate()
            .map(|(s, &layers)| StageSlice {
                layers,
                embedding: s == 0,
                lm_head: s == last,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallelism::rules::even_layer_split;

    fn args(tp: usize, pp: usize, ranks_per_node: usize) -> EngineArgs {
        EngineArgs {
            tp,
            pp,
            nodes: tp * pp / ranks_per_node,
            gpus_per_node: ranks_per_node,
            ranks_per_node,
            layer_split: even_layer_split(80, pp),
            micro_batches: None,
            batch_size: 8,
        }
    }

    #[test]
    fn tp16_on_two_nodes_of_eight_spans_nodes_and_tp8_does_not() {
        assert!(Placement::new(&args(16, 1, 8)).tp_group_spans_nodes(0));
        let hybrid = args(8, 2, 8);
        let p = Placement::new(&hybrid);
        assert!(!p.tp_group_spans_nodes(0) && !p.tp_group_spans_nodes(1));
        assert!(p.send_crosses_nodes(0, 1));
        assert!(!Placement::new(&args(8, 1, 8)).tp_group_spans_nodes(0));
    }

    #[test]
    fn busy_ranks_count_the_stages_at_work_on_the_fullest_host() {
        // tp=3 x pp=2 on nodes of 3 ranks: one stage busy puts 3 ranks on its node, both 3 each
        // on their own node, but 6 on the one host when all nodes are that host.
        let hybrid = args(3, 2, 3);
        let p = Placement::new(&hybrid);
        assert_eq!(p.busy_ranks_per_host(1, false), 3);
        assert_eq!(p.busy_ranks_per_host(2, false), 3);
        assert_eq!(p.busy_ranks_per_host(2, true), 6);
        // tp=3 across 3 nodes of 1: one rank per node, all three on one host.
        let across = args(3, 1, 1);
        let p = Placement::new(&across);
        assert_eq!(p.busy_ranks_per_host(1, false), 1);
        assert_eq!(p.busy_ranks_per_host(1, true), 3);
    }

    #[test]
    fn pp16_on_two_nodes_crosses_the_network_between_stages_7_and_8_only() {
        let pp16 = args(1, 16, 8);
        let p = Placement::new(&pp16);
        let crossing: Vec<_> = (0..15)
            .filter(|&s| p.send_crosses_nodes(s, s + 1))
            .collect();
        assert_eq!(crossing, vec![7]);
        assert!(p.send_crosses_nodes(15, 0));
        let stages = p.stages();
        assert_eq!(stages.len(), 16);
        assert!(stages[0].embedding && !stages[0].lm_head && stages[15].lm_head);
    }
}
