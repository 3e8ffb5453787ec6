//! Charts as SVG (plotters): latency CDFs, throughput against clients or
//! workers, and the compute stage times per operation and backend. SVG needs
//! no fonts on the machine that draws it; the viewer renders the text.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

type Result<T> = std::result::Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing a chart: {e}")
}

const SIZE: (u32, u32) = (900, 540);

fn colour(i: usize) -> RGBColor {
    // Distinguishable on white, in order of use.
    const C: [(u8, u8, u8); 8] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

/// A white canvas of `size` at `path`.
fn canvas(path: &Path, size: (u32, u32)) -> Result<DrawingArea<SVGBackend<'_>, plotters::coord::Shift>> {
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    Ok(root)
}

/// A chart on `root` with its title and room for axis labels below
/// (`x_labels`) and left (`y_labels`) of it.
fn frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
    x_labels: u32,
    y_labels: u32,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 22)).margin(16).x_label_area_size(x_labels).y_label_area_size(y_labels);
    b
}

/// The share of operations (in percent) answered within each recorded
/// latency (in milliseconds).
pub fn cdf_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let total = h.len() as f64;
    let mut seen = 0u64;
    h.iter_recorded()
        .map(|v| {
            seen += v.count_since_last_iteration();
            (h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0, seen as f64 * 100.0 / total)
        })
        .collect()
}

/// A latency CDF per operation type, on a log latency axis.
pub fn latency_cdf(path: &Path, title: &str, series: &[(String, &Histogram<u64>)]) -> Result<()> {
    let series: Vec<(String, Vec<(f64, f64)>)> =
        series.iter().filter(|(_, h)| !h.is_empty()).map(|(n, h)| (n.clone(), cdf_points(h))).collect();
    let lo = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).fold(f64::INFINITY, f64::min);
    let hi = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).fold(0.0, f64::max);
    let (lo, hi) = if series.is_empty() { (0.001, 1.0) } else { (lo.max(0.001) * 0.8, hi.max(lo * 1.5) * 1.25) };
    let root = canvas(path, SIZE)?;
    let mut chart = frame(&root, title, 44, 56).build_cartesian_2d((lo..hi).log_scale(), 0f64..100f64).map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("operations answered within (%)")
        .draw()
        .map_err(err)?;
    draw_lines(&mut chart, &series, false, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(err)
}

/// One coloured line per series (with a dot on each point if `dots`), and
/// the legend.
fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[(String, Vec<(f64, f64)>)],
    dots: bool,
    legend_at: SeriesLabelPosition,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, (name, points)) in series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        if dots {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(legend_at)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// Lines through points, e.g. throughput against clients or workers.
pub fn lines(path: &Path, title: &str, x_desc: &str, y_desc: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let xs = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0));
    let x_hi = xs.clone().fold(1.0, f64::max);
    let x_lo = xs.fold(x_hi, f64::min);
    let y_hi = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).fold(0.0, f64::max);
    let pad = ((x_hi - x_lo) * 0.05).max(0.5);
    let root = canvas(path, SIZE)?;
    let mut chart = frame(&root, title, 44, 72)
        .build_cartesian_2d((x_lo - pad)..(x_hi + pad), 0f64..(y_hi * 1.15).max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| if x.fract().abs() < 1e-9 { format!("{x:.0}") } else { String::new() })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err)?;
    draw_lines(&mut chart, series, true, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(err)
}

/// One bar of a stacked bar chart: its group (an operation), its name (a
/// backend) and its segments (stage times), in the order of `stages`.
#[derive(Debug, Clone)]
pub struct Bar {
    pub group: String,
    pub name: String,
    pub segments: Vec<f64>,
}

/// Groups of stacked bars: per operation, one bar per backend, split into
/// stages.
pub fn stacked_bars(path: &Path, title: &str, y_desc: &str, stages: &[&str], bars: &[Bar]) -> Result<()> {
    let mut groups: Vec<&str> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for b in bars {
        if !groups.contains(&b.group.as_str()) {
            groups.push(&b.group);
        }
        if !names.contains(&b.name.as_str()) {
            names.push(&b.name);
        }
    }
    let per_group = names.len().max(1) as f64 + 1.0;
    let x_hi = groups.len().max(1) as f64 * per_group;
    let y_hi = bars.iter().map(|b| b.segments.iter().sum::<f64>()).fold(0.0, f64::max).max(1e-3) * 1.2;
    let root = canvas(path, (SIZE.0.max(140 * groups.len() as u32), SIZE.1))?;
    let mut chart = frame(&root, title, 60, 72).build_cartesian_2d(0f64..x_hi, 0f64..y_hi).map_err(err)?;
    let group_names: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let label = move |x: &f64| {
        let g = (x / per_group).floor() as usize;
        let centre = g as f64 * per_group + per_group / 2.0;
        if (x - centre).abs() < 0.26 { group_names.get(g).cloned().unwrap_or_default() } else { String::new() }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels((x_hi * 2.0) as usize + 1)
        .x_label_formatter(&label)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for (s, stage) in stages.iter().enumerate() {
        let c = colour(s);
        let rects: Vec<Rectangle<(f64, f64)>> = bars
            .iter()
            .filter_map(|b| {
                let g = groups.iter().position(|x| *x == b.group)? as f64;
                let n = names.iter().position(|x| *x == b.name)? as f64;
                let x0 = g * per_group + 0.5 + n;
                let below: f64 = b.segments[..s].iter().sum();
                let v = *b.segments.get(s)?;
                Some(Rectangle::new([(x0, below), (x0 + 0.9, below + v)], c.filled()))
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(*stage)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    // Each bar's backend, written under it.
    let captions: Vec<Text<'_, (f64, f64), String>> = bars
        .iter()
        .filter_map(|b| {
            let g = groups.iter().position(|x| *x == b.group)? as f64;
            let n = names.iter().position(|x| *x == b.name)? as f64;
            let top: f64 = b.segments.iter().sum();
            Some(Text::new(b.name.clone(), (g * per_group + 0.5 + n, top + y_hi * 0.035), ("sans-serif", 12)))
        })
        .collect();
    chart.draw_series(captions).map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svg(path: &Path) -> String {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{text:.200}");
        text
    }

    #[test]
    fn the_cdf_climbs_to_every_operation() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in [100, 200, 200, 5000] {
            h.record(v).unwrap();
        }
        let p = cdf_points(&h);
        assert_eq!(p.len(), 3);
        assert!((p[1].1 - 75.0).abs() < 1e-9 && (p[2].1 - 100.0).abs() < 1e-9);
        assert!((p[2].0 - 5.0).abs() < 0.01, "{p:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdf.svg");
        latency_cdf(&path, "latency", &[("get".into(), &h)]).unwrap();
        let text = svg(&path);
        assert!(text.contains("get") && text.contains("<polyline"), "{text:.400}");
    }

    #[test]
    fn lines_and_bars_draw_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.svg");
        lines(&path, "throughput", "clients", "ops/s", &[("all".into(), vec![(1.0, 10.0), (8.0, 70.0)])]).unwrap();
        assert!(svg(&path).contains("clients"));
        let path = dir.path().join("bars.svg");
        let bars = vec![
            Bar { group: "blur:2".into(), name: "simd".into(), segments: vec![1.0, 2.0] },
            Bar { group: "blur:2".into(), name: "wgpu".into(), segments: vec![1.0, 0.5] },
            Bar { group: "sobel".into(), name: "simd".into(), segments: vec![0.5, 0.5] },
        ];
        stacked_bars(&path, "stages", "ms", &["decode", "kernel"], &bars).unwrap();
        let text = svg(&path);
        for word in ["blur:2", "sobel", "wgpu", "kernel"] {
            assert!(text.contains(word), "{word} missing");
        }
        assert!(text.matches("<rect").count() >= 6);
    }
}
