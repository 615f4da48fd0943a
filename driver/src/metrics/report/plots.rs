//! The report's plots, each written as PNG and SVG: latency vs correctness, throughput vs prompt
//! length, and the latency distribution of each strategy and variant.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (plotters' `ab_glyph` feature), so a
//! machine without fonts or fontconfig still renders labels.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::rows::{distinct, ScoredRow};
use super::stats::percentile;
use crate::fsutil;
use crate::metrics::MetricsError;

const FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
/// plotters asks for this family unless told otherwise.
const FONT_FAMILY: &str = "sans-serif";

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A plot that can draw itself on any plotters backend.
trait Plot {
    /// The file name, without extension.
    fn name(&self) -> &'static str;
    fn size(&self) -> (u32, u32) {
        (960, 640)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Writes the three plots of `rows` into `dir`; returns the files written.
pub(super) fn write_all(rows: &[ScoredRow], dir: &Path) -> Result<Vec<PathBuf>, MetricsError> {
    register_font()?;
    let strategies = distinct(rows, |r| &r.strategy);
    let points = |x: fn(&ScoredRow) -> Option<f64>, y: fn(&ScoredRow) -> Option<f64>| {
        strategies
            .iter()
            .map(|s| {
                let xy = rows
                    .iter()
                    .filter(|r| r.strategy == *s)
                    .filter_map(|r| Some((x(r)?, y(r)?)))
                    .collect();
                (s.to_string(), xy)
            })
            .collect()
    };
    let latency_vs_correctness = Scatter {
        name: "latency_vs_correctness",
        caption: "Latency vs correctness, one point per prompt",
        x_desc: "latency (ms)",
        y_desc: "correctness (vs baseline)",
        series: points(|r| r.latency_ms, |r| r.correctness),
        y_range: Some(0.0..1.05),
    };
    let throughput = Scatter {
        name: "throughput_vs_prompt_length",
        caption: "Throughput vs prompt length",
        x_desc: "prompt length (tokens)",
        y_desc: "tokens / s",
        series: points(|r| r.prompt_tokens.map(|t| t as f64), |r| r.tokens_per_s),
        y_range: None,
    };
    let distribution = Distribution::of(rows);
    let mut written = Vec::new();
    written.extend(save(&latency_vs_correctness, dir)?);
    written.extend(save(&throughput, dir)?);
    written.extend(save(&distribution, dir)?);
    Ok(written)
}

fn register_font() -> Result<(), MetricsError> {
    // plotters keeps fonts in a global table; registering once per process is enough.
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok()
    });
    if registered {
        Ok(())
    } else {
        Err(MetricsError::Plot {
            name: "font".into(),
            message: "the embedded DejaVu Sans did not load".into(),
        })
    }
}

/// Draws `plot` into `{name}.png` and `{name}.svg`, each written atomically.
fn save(plot: &impl Plot, dir: &Path) -> Result<[PathBuf; 2], MetricsError> {
    let error = |message: String| MetricsError::Plot {
        name: plot.name().to_string(),
        message,
    };
    let (width, height) = plot.size();
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        plot.draw(&root).map_err(|e| error(e.to_string()))?;
        root.present().map_err(|e| error(e.to_string()))?;
    }
    let png = dir.join(format!("{}.png", plot.name()));
    let bytes = encode_png(&pixels, width, height).map_err(|e| error(e.to_string()))?;
    fsutil::write_atomic(&png, &bytes).map_err(|e| super::write_error(&png, e))?;

    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (width, height)).into_drawing_area();
        plot.draw(&root).map_err(|e| error(e.to_string()))?;
        root.present().map_err(|e| error(e.to_string()))?;
    }
    let svg = dir.join(format!("{}.svg", plot.name()));
    fsutil::write_atomic(&svg, text.as_bytes()).map_err(|e| super::write_error(&svg, e))?;
    Ok([png, svg])
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(bytes)
}

/// 0 to a bit past the largest value, so bars and points are not cut at the edge.
fn span(values: impl Iterator<Item = f64>) -> Range<f64> {
    let max = values.fold(0.0f64, f64::max);
    0.0..if max > 0.0 { max * 1.1 } else { 1.0 }
}

fn colour(series: usize) -> ShapeStyle {
    Palette99::pick(series).filled()
}

/// One point per row, one colour and marker per strategy, with a legend.
struct Scatter {
    name: &'static str,
    caption: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    series: Vec<(String, Vec<(f64, f64)>)>,
    /// Fixed y range; `None`: from the data.
    y_range: Option<Range<f64>>,
}

impl Plot for Scatter {
    fn name(&self) -> &'static str {
        self.name
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let all = || self.series.iter().flat_map(|(_, points)| points.iter());
        let x_range = span(all().map(|p| p.0));
        let y_range = self
            .y_range
            .clone()
            .unwrap_or_else(|| span(all().map(|p| p.1)));
        let mut chart = ChartBuilder::on(root)
            .caption(self.caption, (FONT_FAMILY, 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range, y_range)?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .draw()?;
        for (i, (strategy, points)) in self.series.iter().enumerate() {
            let style = colour(i);
            // A marker shape per series as well as a colour, so strategies stay apart in print
            // and for colour-blind readers.
            macro_rules! series {
                ($marker:expr) => {
                    chart
                        .draw_series(points.iter().map(|p| EmptyElement::at(*p) + $marker))?
                        .label(strategy.as_str())
                        .legend(move |at| EmptyElement::at(at) + $marker)
                };
            }
            match i % 4 {
                0 => series!(Circle::new((0, 0), 4, style)),
                1 => series!(TriangleMarker::new((0, 0), 5, style)),
                2 => series!(Rectangle::new([(-3, -3), (3, 3)], style)),
                _ => series!(Cross::new((0, 0), 4, style.stroke_width(2))),
            };
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// A box per strategy and variant: the box spans p25..p75, the bar is p50, the whiskers reach
/// the minimum and maximum (nearest-rank, as in the summary); every latency is drawn as a dot.
struct Distribution {
    /// (label, strategy index for the colour, latencies)
    boxes: Vec<(String, usize, Vec<f64>)>,
}

impl Distribution {
    fn of(rows: &[ScoredRow]) -> Self {
        let strategies = distinct(rows, |r| &r.strategy);
        let variants = distinct(rows, |r| &r.variant);
        let mut boxes = Vec::new();
        for (i, strategy) in strategies.iter().enumerate() {
            for variant in &variants {
                let of = |r: &&ScoredRow| r.strategy == *strategy && r.variant == *variant;
                if !rows.iter().any(|r| of(&r)) {
                    continue;
                }
                let latencies = rows
                    .iter()
                    .filter(of)
                    .filter_map(|r| r.latency_ms)
                    .collect();
                boxes.push((format!("{strategy} {variant}"), i, latencies));
            }
        }
        Self { boxes }
    }
}

impl Plot for Distribution {
    fn name(&self) -> &'static str {
        "latency_distribution"
    }

    fn size(&self) -> (u32, u32) {
        (1200, 640)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let n = self.boxes.len().max(1);
        let y_range = span(self.boxes.iter().flat_map(|b| b.2.iter().copied()));
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Latency per strategy and variant (box p25-p75, bar p50, whiskers min-max)",
                (FONT_FAMILY, 22),
            )
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, y_range)?;
        let label = |x: &f64| {
            let i = x.round();
            let exact = (x - i).abs() < 1e-6 && i >= 0.0;
            exact
                .then(|| self.boxes.get(i as usize).map(|b| b.0.clone()))
                .flatten()
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            // n labels over a range n wide fall on the integers, where the boxes are.
            .x_labels(n)
            .x_label_formatter(&label)
            .y_desc("latency (ms)")
            .draw()?;
        for (x, (_, series, latencies)) in self.boxes.iter().enumerate() {
            let (Some(low), Some(q1), Some(median), Some(q3), Some(high)) = (
                percentile(latencies, 0.0),
                percentile(latencies, 25.0),
                percentile(latencies, 50.0),
                percentile(latencies, 75.0),
                percentile(latencies, 100.0),
            ) else {
                continue;
            };
            let x = x as f64;
            let line = Palette99::pick(*series).stroke_width(2);
            chart.draw_series([
                PathElement::new(vec![(x, low), (x, q1)], line),
                PathElement::new(vec![(x, q3), (x, high)], line),
                PathElement::new(vec![(x - 0.1, low), (x + 0.1, low)], line),
                PathElement::new(vec![(x - 0.1, high), (x + 0.1, high)], line),
                PathElement::new(
                    vec![(x - 0.25, median), (x + 0.25, median)],
                    Palette99::pick(*series).stroke_width(4),
                ),
            ])?;
            chart.draw_series([
                Rectangle::new(
                    [(x - 0.25, q1), (x + 0.25, q3)],
                    Palette99::pick(*series).mix(0.25).filled(),
                ),
                Rectangle::new([(x - 0.25, q1), (x + 0.25, q3)], line),
            ])?;
            // A fixed fan-out instead of random jitter keeps the plots reproducible.
            chart.draw_series(latencies.iter().enumerate().map(|(k, &v)| {
                let dx = ((k % 7) as f64 - 3.0) * 0.03;
                Circle::new((x + dx, v), 2, BLACK.mix(0.6).filled())
            }))?;
        }
        Ok(())
    }
}
