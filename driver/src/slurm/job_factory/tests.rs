//! The job factory's scripts: the checked-in examples stay in sync, bash accepts them, and no
//! profile value can escape its quoting (checked by running the script under bash with stubs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::parallelism::enabled_strategies;
use crate::slurm::profile::ClusterProfile;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn profile(name: &str) -> ClusterProfile {
    ClusterProfile::load(&repo().join(format!("slurm/profiles/{name}.toml"))).unwrap()
}

/// The example scripts: every strategy of the example cluster on both prompt variants.
fn example_scripts() -> Vec<(String, String)> {
    let profile = profile("example-cluster");
    let model = profile.model.facts().unwrap();
    let factory = SlurmJobFactory::new(
        profile.clone(),
        Path::new("/shared/shardlab/runs/example"),
        "example",
    )
    .unwrap();
    let mut out = Vec::new();
    for strategy in enabled_strategies(&profile, &model).unwrap() {
        for variant in ["2k", "4k"] {
            let args = strategy.engine_args();
            let walltime = strategy.slurm_constraints().walltime;
            let rendered = factory
                .render(&JobRequest {
                    strategy: strategy.name(),
                    variant,
                    attempt: 1,
                    args: &args,
                    walltime: walltime.as_deref(),
                    launch: LaunchMode::Srun,
                })
                .unwrap();
            out.push((
                format!("{}-{variant}.sbatch", strategy.name()),
                rendered.text,
            ));
        }
    }
    out
}

#[test]
fn example_scripts_in_slurm_examples_are_in_sync() {
    let dir = repo().join("slurm/examples");
    let scripts = example_scripts();
    if std::env::var_os("UPDATE_EXAMPLES").is_some() {
        for (name, text) in &scripts {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
    let mut stale = Vec::new();
    for (name, text) in &scripts {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if &on_disk != text {
            stale.push(name.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "slurm/examples/ is out of date for {stale:?}: regenerate with `UPDATE_EXAMPLES=1 cargo test -p shardlab-driver example_scripts`"
    );
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sbatch"))
        .collect();
    names.sort();
    let mut want: Vec<_> = scripts.iter().map(|(n, _)| n.clone()).collect();
    want.sort();
    assert_eq!(
        names, want,
        "slurm/examples/ holds scripts no strategy renders"
    );
}

#[test]
fn bash_accepts_every_example_script() {
    for (name, text) in example_scripts() {
        let out = Command::new("bash")
            .arg("-n")
            .arg("-c")
            .arg(&text)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn example_scripts_carry_the_layout_and_the_nccl_settings() {
    let scripts: BTreeMap<_, _> = example_scripts().into_iter().collect();
    let tp16 = &scripts["tp-across-nodes-2k.sbatch"];
    for line in [
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --exclusive",
        "export NCCL_SOCKET_IFNAME=ib0",
        "export NCCL_DEBUG=WARN",
        "module load cuda/12.4",
    ] {
        assert!(tp16.lines().any(|l| l == line), "missing `{line}`:\n{tp16}");
    }
    assert!(
        tp16.contains("srun --mpi=pmix /shared/shardlab/bin/engine run --tp 16 --pp 1 "),
        "{tp16}"
    );
    assert!(tp16.contains("--strategy tp-across-nodes"));
    assert!(tp16
        .contains("--prompts /shared/shardlab/runs/example/jobs/tp-across-nodes/2k/prompts.jsonl"));
    let hybrid = &scripts["hybrid-tp-pp-4k.sbatch"];
    assert!(
        hybrid.contains("run --tp 8 --pp 2 --pp-layers 40,40 "),
        "{hybrid}"
    );
    let single = &scripts["tp-single-node-4k.sbatch"];
    assert!(single.lines().any(|l| l == "#SBATCH --nodes=1"), "{single}");
}

/// A value that would run `touch` if any quoting failed.
fn hostile(canary: &Path, tag: &str) -> String {
    let c = canary.display();
    format!("{tag} it's \"q\" $(touch {c}) `touch {c}` ; touch {c} $HOME \\ *")
}

#[test]
fn hostile_profile_values_cannot_escape_their_quoting() {
    let tmp = tempfile::tempdir().unwrap();
    let canary = tmp.path().join("canary");
    let mut p = profile("local-ci");
    p.slurm.partition = Some(hostile(&canary, "part"));
    p.slurm.account = Some(hostile(&canary, "acct"));
    p.slurm.constraint = Some(hostile(&canary, "feat"));
    p.slurm.modules = vec![hostile(&canary, "mod")];
    p.slurm.container_image = Some(hostile(&canary, "img"));
    p.slurm.container_mounts = vec![hostile(&canary, "mnt")];
    p.nccl.socket_ifname = Some(hostile(&canary, "if"));
    p.env
        .insert("SHARDLAB_HOSTILE".into(), hostile(&canary, "env"));
    p.model.path = PathBuf::from(hostile(&canary, "model"));
    p.engine.binary = PathBuf::from(hostile(&canary, "engine"));
    let run_dir = tmp.path().join("run dir 'with' $(quotes)");
    let factory = SlurmJobFactory::new(p.clone(), &run_dir, "hostile").unwrap();
    let strategy =
        crate::parallelism::strategy_by_name("hybrid-tp-pp", &p, &p.model.facts().unwrap())
            .unwrap();
    let args = strategy.engine_args();
    let rendered = factory
        .write(&JobRequest {
            strategy: strategy.name(),
            variant: "2k",
            attempt: 1,
            args: &args,
            walltime: None,
            launch: LaunchMode::Srun,
        })
        .unwrap();

    // Stubs for srun and module record their arguments (NUL-separated) and the environment.
    let stubs = tmp.path().join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let record = tmp.path().join("calls");
    for name in ["srun", "module"] {
        let stub = stubs.join(name);
        std::fs::write(
            &stub,
            format!(
                "#!/bin/bash\n{{ printf '%s\\0' {name} \"$@\"; printf '\\n'; }} >> {rec}\nenv -0 > {rec}.env.{name}\n",
                rec = shlex::try_quote(&record.display().to_string()).unwrap()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(&rendered.script.script)
        .env("PATH", path)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !canary.exists(),
        "a hostile value ran a command:\n{}",
        rendered.text
    );

    let calls = std::fs::read_to_string(&record).unwrap();
    let calls: Vec<Vec<&str>> = calls
        .lines()
        .map(|l| l.trim_end_matches('\0').split('\0').collect())
        .collect();
    assert_eq!(calls[0], vec!["module", "load", &hostile(&canary, "mod")]);
    assert_eq!(calls[1], vec!["srun", "bash", "-c", PLACEMENT_COMMAND]);
    let engine = &calls[2];
    assert_eq!(
        engine[..3],
        [
            "srun",
            "--mpi=pmix",
            &format!("--container-image={}", hostile(&canary, "img"))
        ]
    );
    assert_eq!(
        engine[3],
        format!("--container-mounts={}", hostile(&canary, "mnt"))
    );
    assert_eq!(engine[4], hostile(&canary, "engine"));
    let model_flag = engine.iter().position(|a| *a == "--model").unwrap();
    assert_eq!(engine[model_flag + 1], hostile(&canary, "model"));
    let prompts_flag = engine.iter().position(|a| *a == "--prompts").unwrap();
    assert_eq!(
        Path::new(engine[prompts_flag + 1]),
        std::path::absolute(&run_dir)
            .unwrap()
            .join("jobs/hybrid-tp-pp/2k/prompts.jsonl")
    );
    let env = std::fs::read(format!("{}.env.srun", record.display())).unwrap();
    let env: Vec<String> = env
        .split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    for (name, tag) in [("NCCL_SOCKET_IFNAME", "if"), ("SHARDLAB_HOSTILE", "env")] {
        let want = format!("{name}={}", hostile(&canary, tag));
        assert!(env.contains(&want), "{name} was not exported exactly");
    }

    // The #SBATCH lines, read the way a shell reads words, give back the exact values.
    let sbatch_words = |option: &str| -> String {
        let line = rendered
            .text
            .lines()
            .find(|l| l.starts_with(&format!("#SBATCH {option}=")))
            .unwrap_or_else(|| panic!("no #SBATCH {option}"));
        let rest = line.trim_start_matches("#SBATCH ");
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("printf '%s\\0' {rest}"))
            .output()
            .unwrap();
        let words: Vec<String> = out
            .stdout
            .split(|&b| b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert_eq!(words.len(), 1, "{line} is not one word: {words:?}");
        words[0].clone()
    };
    assert_eq!(
        sbatch_words("--partition"),
        format!("--partition={}", hostile(&canary, "part"))
    );
    assert_eq!(
        sbatch_words("--account"),
        format!("--account={}", hostile(&canary, "acct"))
    );
    assert_eq!(
        sbatch_words("--constraint"),
        format!("--constraint={}", hostile(&canary, "feat"))
    );
    assert!(!canary.exists(), "a hostile #SBATCH value ran a command");
}

#[test]
fn a_line_break_in_an_sbatch_value_is_refused_with_its_field() {
    let mut p = profile("local-ci");
    p.slurm.partition = Some("debug\ntouch /tmp/x".into());
    let factory = SlurmJobFactory::new(p.clone(), Path::new("/tmp/run"), "r1").unwrap();
    let strategy =
        crate::parallelism::strategy_by_name("tp-single-node", &p, &p.model.facts().unwrap())
            .unwrap();
    let args = strategy.engine_args();
    let err = factory
        .render(&JobRequest {
            strategy: strategy.name(),
            variant: "2k",
            attempt: 1,
            args: &args,
            walltime: None,
            launch: LaunchMode::Srun,
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("field partition") && err.contains("tp-single-node"),
        "{err}"
    );

    let mut p = profile("local-ci");
    p.env.insert("BAD NAME".into(), "x".into());
    let factory = SlurmJobFactory::new(p, Path::new("/tmp/run"), "r1").unwrap();
    let err = factory
        .render(&JobRequest {
            strategy: strategy.name(),
            variant: "2k",
            attempt: 1,
            args: &args,
            walltime: None,
            launch: LaunchMode::Srun,
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("env.BAD NAME"), "{err}");
}

#[test]
fn the_local_launch_mode_uses_mpirun_with_the_world_size() {
    let p = profile("local-ci");
    let factory = SlurmJobFactory::new(p.clone(), Path::new("/tmp/run"), "r1").unwrap();
    let strategy =
        crate::parallelism::strategy_by_name("tp-across-nodes", &p, &p.model.facts().unwrap())
            .unwrap();
    let args = strategy.engine_args();
    let text = factory
        .render(&JobRequest {
            strategy: strategy.name(),
            variant: "2k",
            attempt: 2,
            args: &args,
            walltime: None,
            launch: LaunchMode::Mpirun { as_root: true },
        })
        .unwrap()
        .text;
    assert!(text.contains("\nmpirun -n 4 --oversubscribe --allow-run-as-root target/debug/engine run --tp 4 --pp 1 "), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("srun")), "{text}");
    assert!(text.contains("/tmp/run/jobs/tp-across-nodes/2k/attempt-2/out.jsonl"));
}

#[test]
fn shards_hold_only_their_variant_and_names_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let factory = SlurmJobFactory::new(profile("local-ci"), tmp.path(), "r1").unwrap();
    let prompts = vec![
        PromptRow {
            prompt_id: "p01".into(),
            variant: "2k".into(),
            prompt: "a".into(),
            messages: None,
            token_budget: Some(2048),
        },
        PromptRow {
            prompt_id: "p01".into(),
            variant: "4k".into(),
            prompt: "b".into(),
            messages: None,
            token_budget: Some(4096),
        },
        PromptRow {
            prompt_id: "p02".into(),
            variant: "2k".into(),
            prompt: "c".into(),
            messages: None,
            token_budget: None,
        },
    ];
    assert_eq!(
        SlurmJobFactory::variants(&prompts).unwrap(),
        vec!["2k", "4k"]
    );
    let shard = factory
        .write_prompt_shard("tp-single-node", "2k", &prompts)
        .unwrap();
    let rows: Vec<PromptRow> = std::fs::read_to_string(shard)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows, vec![prompts[0].clone(), prompts[2].clone()]);
    let err = factory
        .write_prompt_shard("tp-single-node", "8k", &prompts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no prompts of variant `8k`"), "{err}");
    let bad = vec![PromptRow {
        variant: "../x".into(),
        ..prompts[0].clone()
    }];
    assert!(SlurmJobFactory::variants(&bad).is_err());
}
