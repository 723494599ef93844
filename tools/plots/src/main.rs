//! `roomcast-plots`: SVG plots of the VR scaling runs, from `roomcast-bench vr` JSON lines.
//!
//! ```text
//! cargo run --release --manifest-path tools/plots/Cargo.toml -- target/vr-scaling.jsonl benches/plots [NOTE]
//! ```
//!
//! Each input line is either a bench result (the last line `roomcast-bench` prints) or the
//! `{"label":..,"run":..,"result":{..}}` wrapper that `benches/*.sh` write. Runs are grouped
//! into series by their settings (room size, tracked parts, interest management) and by
//! headsets; each point is the median of its runs. Three plots are written: server CPU share
//! (`vr-cpu.svg`), server-side tick jitter p99 (`vr-tick-p99.svg`) and bytes out per second
//! (`vr-bytes.svg`), each against headsets. NOTE, when given, is printed under each title
//! (for instance where and how the runs were made).

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plotters::prelude::*;
use serde_json::Value;

/// One plot: file, title, y-axis label, and how to read its figure from a result.
struct Plot {
    file: &'static str,
    title: &'static str,
    y_label: &'static str,
    figure: fn(&Value) -> Option<f64>,
}

const PLOTS: [Plot; 3] = [
    Plot {
        file: "vr-cpu.svg",
        title: "Server CPU share (cores)",
        y_label: "CPU-seconds per second",
        figure: |r| r["server_cpu_share"].as_f64(),
    },
    Plot {
        file: "vr-tick-p99.svg",
        title: "Server-side tick jitter p99",
        y_label: "ms",
        figure: |r| r["server_tick_jitter_ms"]["p99"].as_f64(),
    },
    Plot {
        file: "vr-bytes.svg",
        title: "Bytes out per second",
        y_label: "MB/s",
        figure: |r| r["bytes_out_per_s"].as_f64().map(|b| b / 1e6),
    },
];

/// Series name -> headsets -> the figures of every run (the whole result objects).
type Series = BTreeMap<String, BTreeMap<u64, Vec<Value>>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(input), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: roomcast-plots RESULTS.jsonl OUT_DIR [NOTE]");
        return ExitCode::from(2);
    };
    let note = args.get(2).cloned().unwrap_or_default();
    match run(Path::new(input), &PathBuf::from(out), &note) {
        Ok(written) => {
            for file in written {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("roomcast-plots: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(input: &Path, out: &Path, note: &str) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let text = std::fs::read_to_string(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let series = read(&text)?;
    if series.is_empty() {
        return Err(format!("{}: no vr results", input.display()).into());
    }
    std::fs::create_dir_all(out)?;
    PLOTS
        .iter()
        .map(|plot| {
            let path = out.join(plot.file);
            draw(plot, &series, note, &path)?;
            Ok(path)
        })
        .collect()
}

/// The vr results of every line, grouped.
fn read(text: &str) -> Result<Series, Box<dyn Error>> {
    let mut series = Series::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row: Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        let result = match row.get("result") {
            Some(result) => result.clone(),
            None => row,
        };
        if result["scenario"] != "vr" {
            continue;
        }
        let Some(headsets) = result["headsets"].as_u64() else {
            continue; // from a bench without the VR settings in its line
        };
        series
            .entry(series_name(&result, headsets))
            .or_default()
            .entry(headsets)
            .or_default()
            .push(result);
    }
    Ok(series)
}

/// "rooms of 20, head + 2 parts, nearest 20" and the like.
fn series_name(result: &Value, headsets: u64) -> String {
    let room_size = result["room_size"].as_u64().unwrap_or(0);
    let rooms = match room_size >= headsets {
        true => "one room".to_owned(),
        false => format!("rooms of {room_size}"),
    };
    let body = match result["parts"].as_u64().unwrap_or(0) {
        0 => "head only".to_owned(),
        2 => "head + 2 hands".to_owned(),
        parts => format!("head + {parts} parts"),
    };
    let mut name = format!("{rooms}, {body}");
    if let Some(k) = result["interest_nearest"].as_u64().filter(|&k| k > 0) {
        name.push_str(&format!(", nearest {k}"));
    }
    if let Some(r) = result["interest_radius"].as_f64().filter(|&r| r > 0.0) {
        name.push_str(&format!(", radius {r} m"));
    }
    name
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn draw(plot: &Plot, series: &Series, note: &str, path: &Path) -> Result<(), Box<dyn Error>> {
    let points: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, by_headsets)| {
            let line = by_headsets
                .iter()
                .filter_map(|(&headsets, runs)| {
                    let values = runs.iter().filter_map(plot.figure).collect();
                    median(values).map(|y| (headsets as f64, y))
                })
                .collect();
            (name.clone(), line)
        })
        .collect();
    let x_max = points
        .iter()
        .flat_map(|(_, l)| l.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    let y_max = points
        .iter()
        .flat_map(|(_, l)| l.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let root = SVGBackend::new(path, (760, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = match note.is_empty() {
        true => plot.title.to_owned(),
        false => format!("{} ({note})", plot.title),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..(y_max * 1.15).max(1e-9))?;
    chart
        .configure_mesh()
        .x_desc("headsets")
        .y_desc(plot.y_label)
        .draw()?;
    for (i, (name, line)) in points.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(
            line.iter()
                .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_into_series_with_medians() {
        let line = |headsets: u64, parts: u64, k: u64, cpu: f64| {
            format!(
                r#"{{"label":"x","run":1,"result":{{"scenario":"vr","headsets":{headsets},"room_size":20,"parts":{parts},"interest_nearest":{k},"interest_radius":0.0,"server_cpu_share":{cpu}}}}}"#
            )
        };
        let text = [
            line(500, 0, 0, 0.3),
            line(500, 0, 0, 0.5),
            line(500, 0, 0, 0.4),
            line(1000, 2, 0, 0.9),
            r#"{"scenario":"chat","headsets":1}"#.to_owned(),
        ]
        .join("\n");
        let series = read(&text).unwrap();
        assert_eq!(
            series.keys().collect::<Vec<_>>(),
            ["rooms of 20, head + 2 hands", "rooms of 20, head only"]
        );
        let runs: Vec<f64> = series["rooms of 20, head only"][&500]
            .iter()
            .filter_map(|r| r["server_cpu_share"].as_f64())
            .collect();
        assert_eq!(median(runs), Some(0.4));
    }
}
