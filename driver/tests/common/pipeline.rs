//! Helpers for the `driver run` tests: a config for a run, the run's folder and table, the
//! report's files checked for validity.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use polars::prelude::*;

use super::{data_dir, driver, llama3_tokenizer, wait_output};

/// `driver run --no-progress --config CONFIG` to its end, with `env` added to its environment
/// and its stderr in `log`; killed, failing the test, past `limit`.
pub fn driver_run(config: &Path, env: &[(String, String)], log: &Path, limit: Duration) -> Output {
    let child = driver()
        .args(["run", "--no-progress", "--config"])
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    wait_output(child, limit, log)
}

/// What a `driver run` test config holds beyond the defaults.
pub struct RunConfig<'a> {
    pub results: &'a Path,
    pub model: &'a Path,
    pub engine: &'a Path,
    pub profile: &'a Path,
    pub launcher: &'a str,
    pub prompt_ids: &'a [&'a str],
    pub max_tokens: u32,
    /// The strategies to run; empty: those the profile enables.
    pub strategies: &'a [&'a str],
}

/// A CSV file with a header row, as polars reads it; fails the test naming the file.
pub fn read_csv(path: &Path) -> DataFrame {
    CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|reader| reader.finish())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes the config of a run with the embedded baseline on `model`.
pub fn write_run_config(dir: &Path, c: &RunConfig) -> PathBuf {
    let quote = |p: &Path| format!("{:?}", p.display().to_string());
    let ids: Vec<String> = c.prompt_ids.iter().map(|i| format!("{i:?}")).collect();
    let strategies: Vec<String> = c.strategies.iter().map(|s| format!("{s:?}")).collect();
    let text = format!(
        r#"[prompts]
dir = {data}
tokenizer = {tokenizer}

[results]
dir = {results}

[baseline]
url = "embedded"
model = {model}
max_tokens = {max_tokens}
top_logprobs = 1
requests_per_minute = 0
concurrency = 2
request_timeout_s = 900.0

[baseline.embedded]
engine_bin = {engine}
max_batch = 4

[cluster]
profile = {profile}
launcher = "{launcher}"
engine_bin = {engine}
strategies = [{strategies}]
poll_min_ms = 200
poll_max_ms = 2000

[run]
prompt_ids = [{ids}]
"#,
        data = quote(&data_dir()),
        tokenizer = quote(&llama3_tokenizer()),
        results = quote(c.results),
        model = quote(c.model),
        engine = quote(c.engine),
        profile = quote(c.profile),
        launcher = c.launcher,
        max_tokens = c.max_tokens,
        ids = ids.join(", "),
        strategies = strategies.join(", "),
    );
    let path = dir.join("run-config.toml");
    std::fs::write(&path, text).expect("write the run config");
    path
}

/// The one run folder under `results` (`run_<timestamp>`).
pub fn only_run(results: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(results)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("run_"))
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "run folders in {}: {runs:?}",
        results.display()
    );
    runs[0].clone()
}

/// The run's master table (`results/run_<timestamp>.parquet`).
pub fn run_table(run_dir: &Path) -> DataFrame {
    let path = run_dir.with_extension("parquet");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(file).finish().unwrap()
}

/// The report's files exist and are what they claim: the CSV reads back in polars with a row
/// per strategy and variant, each PNG decodes, each SVG parses as XML.
pub fn check_report(run_dir: &Path, strategies: usize, variants: usize) {
    let csv = run_dir.join("summary.csv");
    let df = read_csv(&csv);
    assert_eq!(df.height(), strategies * variants, "{df}");
    for column in ["strategy", "variant"] {
        assert!(
            df.column(column).is_ok(),
            "{}: no `{column}`",
            csv.display()
        );
    }
    let md = std::fs::read_to_string(run_dir.join("summary.md")).unwrap();
    assert!(md.contains('|'), "summary.md holds no table:\n{md}");
    let mut pngs = 0;
    let mut svgs = 0;
    for entry in std::fs::read_dir(run_dir).unwrap().flatten() {
        let path = entry.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("png") => {
                let decoder = png::Decoder::new(std::fs::File::open(&path).unwrap());
                let mut reader = decoder
                    .read_info()
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let mut buf = vec![0; reader.output_buffer_size()];
                let info = reader
                    .next_frame(&mut buf)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(info.width > 100 && info.height > 100, "{}", path.display());
                pngs += 1;
            }
            Some("svg") => {
                let text = std::fs::read_to_string(&path).unwrap();
                let doc = roxmltree::Document::parse(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(doc.root_element().tag_name().name(), "svg");
                svgs += 1;
            }
            _ => {}
        }
    }
    assert!(
        pngs >= 3 && svgs >= 3,
        "plots in {}: {pngs} PNG, {svgs} SVG",
        run_dir.display()
    );
}

/// A string column's values.
pub fn strings(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    df.column(name)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

/// A float column's values.
pub fn floats(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    df.column(name)
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .collect()
}
