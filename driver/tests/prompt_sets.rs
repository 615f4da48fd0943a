//! The committed prompt sets: they pass the checks, the generator rebuilds them byte for byte,
//! and broken copies fail with the file, the line and the prompt ID named.

mod common;

use std::path::Path;

use driver::data::answers::{Answer, AnswerSet};
use driver::data::generator::{self, DEFAULT_SEED};
use driver::data::prompts::{PromptFileSet, PromptRepository, PromptSetError, Variant};

#[test]
fn committed_prompt_files_pass_the_checks() {
    let set = PromptFileSet::load(&common::data_dir(), &common::counter()).expect("valid set");
    for variant in Variant::ALL {
        let file = set.file(variant).expect("both variants");
        assert_eq!(file.prompts.len(), 20);
        for (prompt, tokens) in file.prompts.iter().zip(&file.token_counts) {
            assert!(
                variant.token_range().contains(tokens),
                "{} {variant}: {tokens}",
                prompt.id
            );
        }
    }
    // The 4k prompt of a task has about twice the context of the 2k one.
    let (k2, k4) = (
        set.file(Variant::K2).unwrap(),
        set.file(Variant::K4).unwrap(),
    );
    for (i, prompt) in k2.prompts.iter().enumerate() {
        let ratio = k4.token_counts[i] as f64 / k2.token_counts[i] as f64;
        assert!((1.7..=2.3).contains(&ratio), "{}: ratio {ratio}", prompt.id);
        assert_eq!(k4.prompts[i].id, prompt.id);
    }
}

#[test]
fn rebuilding_reproduces_the_committed_files_byte_for_byte() {
    let built = generator::build(DEFAULT_SEED, &common::counter()).expect("build");
    let dir = tempfile::tempdir().unwrap();
    built.write(dir.path()).expect("write");
    for name in ["prompts_2k.txt", "prompts_4k.txt", "answers.json"] {
        let committed = std::fs::read(common::data_dir().join(name)).unwrap();
        let rebuilt = std::fs::read(dir.path().join(name)).unwrap();
        assert!(
            committed == rebuilt,
            "data/{name} differs from what `driver prompts build` makes: rebuild it (`make prompts`)"
        );
    }
}

#[test]
fn every_prompt_has_an_answer_of_its_family() {
    let answers = AnswerSet::load(&common::data_dir().join("answers.json")).unwrap();
    let repository = PromptRepository::new(common::data_dir(), common::counter());
    let records = repository.load_all().unwrap();
    assert_eq!(records.len(), 40);
    for record in &records {
        let entry = answers.get(&record.prompt_id).expect("an entry per prompt");
        let answer = entry.answer(record.variant).expect("an answer per variant");
        let fits = match (entry.task.as_str(), answer) {
            ("record-lookup" | "relation-chain", Answer::Text(t)) => {
                record.prompt.contains(t.as_str())
            }
            ("aggregate" | "code-trace", Answer::Number(_)) => true,
            ("report-summary", Answer::Points(points)) => {
                points.len() == 5 && points.values().all(|v| record.prompt.contains(v.as_str()))
            }
            _ => false,
        };
        assert!(fits, "{} {}: {answer:?}", record.prompt_id, record.variant);
        let meta = repository
            .metadata(&record.prompt_id, record.variant)
            .unwrap();
        assert!(meta.source_file.ends_with(record.variant.file_name()));
    }
}

/// A copy of the committed set in a temp folder, with `edit` applied to one file.
fn broken_copy(file: &str, edit: impl FnOnce(String) -> Option<String>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["prompts_2k.txt", "prompts_4k.txt"] {
        std::fs::copy(common::data_dir().join(name), dir.path().join(name)).unwrap();
    }
    let path = dir.path().join(file);
    match edit(std::fs::read_to_string(&path).unwrap()) {
        Some(text) => std::fs::write(&path, text).unwrap(),
        None => std::fs::remove_file(&path).unwrap(),
    }
    dir
}

fn problems(dir: &Path) -> String {
    match PromptFileSet::load(dir, &common::counter()) {
        Ok(_) => panic!("the broken copy in {} passed the checks", dir.display()),
        Err(PromptSetError::Invalid(issues)) => issues.iter().map(|i| format!("{i}\n")).collect(),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The 1-based lines of the headers `=== id ===` in `file` of `dir`.
fn header_lines(dir: &Path, file: &str, id: &str) -> Vec<usize> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let header = format!("=== {id} ===");
    text.lines()
        .enumerate()
        .filter(|(_, l)| *l == header)
        .map(|(i, _)| i + 1)
        .collect()
}

/// The line of the first header `=== id ===`.
fn header_line(dir: &Path, file: &str, id: &str) -> usize {
    header_lines(dir, file, id)[0]
}

/// Removes the block of `id` (its header to the next header).
fn remove_prompt(text: &str, id: &str) -> String {
    let start = text.find(&format!("=== {id} ===")).unwrap();
    let end = text[start + 3..]
        .find("\n=== ")
        .map(|e| start + 3 + e + 1)
        .unwrap_or(text.len());
    format!("{}{}", &text[..start], &text[end..])
}

#[test]
fn nineteen_prompts_fail_naming_the_file_and_the_missing_id() {
    let dir = broken_copy("prompts_2k.txt", |t| Some(remove_prompt(&t, "p13")));
    let report = problems(dir.path());
    assert!(report.contains("prompts_2k.txt:"), "{report}");
    assert!(report.contains("holds 19 prompts, expected 20"), "{report}");
    let line = header_line(dir.path(), "prompts_4k.txt", "p13");
    assert!(
        report.contains(&format!(
            "prompts_4k.txt:{line}: prompt p13: has no 2k variant"
        )),
        "{report}"
    );
}

#[test]
fn a_duplicate_id_fails_naming_both_lines() {
    let dir = broken_copy("prompts_4k.txt", |t| {
        Some(t.replace("=== p05 ===", "=== p04 ==="))
    });
    let report = problems(dir.path());
    let [first, duplicate] = header_lines(dir.path(), "prompts_4k.txt", "p04")[..] else {
        panic!("two p04 headers expected");
    };
    assert!(
        report.contains(&format!(
            "prompts_4k.txt:{duplicate}: prompt p04: duplicate ID (first defined at line {first})"
        )),
        "{report}"
    );
}

#[test]
fn an_id_missing_from_one_variant_fails_naming_it() {
    let dir = broken_copy("prompts_4k.txt", |t| {
        Some(t.replace("=== p07 ===", "=== p21 ==="))
    });
    let report = problems(dir.path());
    let line_2k = header_line(dir.path(), "prompts_2k.txt", "p07");
    let line_4k = header_line(dir.path(), "prompts_4k.txt", "p21");
    assert!(
        report.contains(&format!(
            "prompts_2k.txt:{line_2k}: prompt p07: has no 4k variant"
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "prompts_4k.txt:{line_4k}: prompt p21: has no 2k variant"
        )),
        "{report}"
    );
}

#[test]
fn an_empty_prompt_fails_naming_it() {
    let dir = broken_copy("prompts_2k.txt", |t| {
        let start = t.find("=== p03 ===\n").unwrap() + "=== p03 ===\n".len();
        let end = t.find("\n=== p04 ===").unwrap();
        Some(format!("{}\n{}", &t[..start], &t[end..]))
    });
    let report = problems(dir.path());
    let line = header_line(dir.path(), "prompts_2k.txt", "p03");
    assert!(
        report.contains(&format!("prompts_2k.txt:{line}: prompt p03: empty prompt")),
        "{report}"
    );
}

#[test]
fn a_prompt_thirty_percent_over_budget_fails_naming_it() {
    let dir = broken_copy("prompts_4k.txt", |t| {
        // p09 is a code listing; a third more of it puts it about 30% over.
        let start = t.find("=== p09 ===\n").unwrap() + "=== p09 ===\n".len();
        let end = t.find("\n=== p10 ===").unwrap();
        let body = &t[start..end];
        let extra: String = body.chars().take(body.chars().count() * 3 / 10).collect();
        Some(format!("{}{body}\n{extra}{}", &t[..start], &t[end..]))
    });
    let report = problems(dir.path());
    let line = header_line(dir.path(), "prompts_4k.txt", "p09");
    assert!(
        report.contains(&format!("prompts_4k.txt:{line}: prompt p09: ")),
        "{report}"
    );
    assert!(
        report.contains("outside the 4k budget 4096 +-10% (3687..=4505)"),
        "{report}"
    );
}

#[test]
fn a_missing_file_fails_naming_it() {
    let dir = broken_copy("prompts_4k.txt", |_| None);
    let report = problems(dir.path());
    assert!(
        report.contains("prompts_4k.txt: cannot read the 4k prompt set"),
        "{report}"
    );
}

#[test]
fn driver_prompts_check_passes_the_committed_files_and_fails_a_broken_copy() {
    let ok = common::driver()
        .args(["prompts", "check", "--dir"])
        .arg(common::data_dir())
        .arg("--tokenizer")
        .arg(common::llama3_tokenizer())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok:"));

    let dir = broken_copy("prompts_2k.txt", |t| {
        Some(t.replace("=== p11 ===", "=== p10 ==="))
    });
    let bad = common::driver()
        .args(["prompts", "check", "--dir"])
        .arg(dir.path())
        .arg("--tokenizer")
        .arg(common::llama3_tokenizer())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    let [first, duplicate] = header_lines(dir.path(), "prompts_2k.txt", "p10")[..] else {
        panic!("two p10 headers expected");
    };
    assert!(
        stderr.contains(&format!(
            "prompts_2k.txt:{duplicate}: prompt p10: duplicate ID (first defined at line {first})"
        )),
        "{stderr}"
    );
}
