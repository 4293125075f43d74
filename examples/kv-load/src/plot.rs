//! The figure: throughput over time through the release sequence, live updates above,
//! graceful restarts below, each update marked. SVG always; PNG too, drawn with a TrueType font
//! read at run time (plotters needs one to lay out text, and we build no system library in).

use crate::load::BUCKET;
use crate::scenario::Run;
use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Fonts looked for, in order (Debian/Ubuntu, Fedora, Arch paths of DejaVu Sans and Liberation).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers the first font found as "sans-serif"; its path.
fn register_font() -> Result<&'static str> {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            // plotters keeps the font for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| anyhow!("{path} is not a font plotters can read"))?;
            return Ok(path);
        }
    }
    Err(anyhow!("no TrueType font found (looked for {}); the figure needs one for its text", FONTS.join(", ")))
}

const LIVE: RGBColor = RGBColor(0x1b, 0x7f, 0x3b);
const SNAPSHOT: RGBColor = RGBColor(0x1f, 0x5f, 0xbf);
const LOST: RGBColor = RGBColor(0xc0, 0x39, 0x2b);

fn kreq(n: u64) -> f64 {
    n as f64 / BUCKET.as_secs_f64() / 1000.0
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    runs: &[(&Run, RGBColor, &str)],
    x_max: f64,
    y_max: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds of load")
        .y_desc("thousand requests / s")
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (k, (run, color, name)) in runs.iter().enumerate() {
        for (i, e) in run.events.iter().enumerate() {
            let line = color.mix(0.35).stroke_width(1);
            chart.draw_series(LineSeries::new([(e.at, 0.0), (e.at, y_max)], line)).map_err(|e| anyhow!("{e}"))?;
            // Labels of the second series sit lower, so two runs' labels do not overlap.
            let y = y_max * (0.97 - 0.06 * k as f64 - 0.03 * (i % 2) as f64);
            chart
                .draw_series([Text::new(
                    e.label.clone(),
                    (e.at + 0.05, y),
                    ("sans-serif", 11).into_font().color(color),
                )])
                .map_err(|e| anyhow!("{e}"))?;
        }
        let t = |i: usize| (i as f64 + 0.5) * BUCKET.as_secs_f64();
        let points = run.series.iter().enumerate().map(|(i, b)| (t(i), kreq(b.completed)));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        if run.series.iter().any(|b| b.missing > 0) {
            // Throughput alone hides lost state: a GET of a lost key is answered as fast as any.
            let found = run.series.iter().enumerate().map(|(i, b)| (t(i), kreq(b.completed - b.missing)));
            let faint = color.mix(0.45);
            chart
                .draw_series(LineSeries::new(found, faint.stroke_width(1)))
                .map_err(|e| anyhow!("{e}"))?
                .label("  of which found their key (GET answered with the value, or SET)")
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], faint.stroke_width(1)));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, live: &Run, restarts: &[&Run], keys: u64) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let all = std::iter::once(live).chain(restarts.iter().copied());
    let x_max = all.clone().map(|r| r.seconds).fold(1.0, f64::max);
    let y_max = all.flat_map(|r| r.series.iter().map(|b| kreq(b.completed))).fold(1.0, f64::max) * 1.15;
    let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 / 2);
    panel(
        &top,
        &format!("dsu: every release applied live to one process ({} keys)", thousands(keys)),
        &[(live, LIVE, "cargo dsu build, patches through the control socket")],
        x_max,
        y_max,
    )?;
    let series: Vec<(&Run, RGBColor, &str)> = restarts
        .iter()
        .map(|r| {
            if r.name.contains("snapshot") {
                (*r, SNAPSHOT, "graceful restart, state saved to a snapshot and loaded")
            } else {
                (*r, LOST, "graceful restart (SO_REUSEPORT), state lost")
            }
        })
        .collect();
    panel(&bottom, "graceful restart of the plain build, release by release", &series, x_max, y_max)?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// 1000000 as "1,000,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Draws `<stem>.svg` and `<stem>.png`; returns the font used.
pub fn figure(stem: &Path, live: &Run, restarts: &[&Run], keys: u64) -> Result<&'static str> {
    let font = register_font()?;
    let size = (1400, 900);
    let svg = stem.with_extension("svg");
    draw(SVGBackend::new(&svg, size).into_drawing_area(), live, restarts, keys)
        .with_context(|| format!("drawing {}", svg.display()))?;
    let png = stem.with_extension("png");
    draw(BitMapBackend::new(&png, size).into_drawing_area(), live, restarts, keys)
        .with_context(|| format!("drawing {}", png.display()))?;
    Ok(font)
}
