//! Dependency-free SVG scatter plot for eval summaries: one labelled marker
//! per configuration (e.g. a sampler) with horizontal and vertical error bars
//! (e.g. 95% intervals of a diversity metric and of accuracy), axes with
//! "nice" ticks, a title and axis labels.

use std::fmt::Write;

/// Canvas width, pixels.
pub const WIDTH: f64 = 720.0;
/// Canvas height, pixels.
pub const HEIGHT: f64 = 480.0;
/// Plot area margins, pixels: left, right, top, bottom.
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// Fixed marker palette, cycled when there are more points.
const PALETTE: &[&str] = &["#1f5fa8", "#e0701a", "#2e9a44", "#c7303a", "#7d55b5", "#8a5a44", "#d655a8", "#6b6b6b", "#a8a41c", "#1aa6b8"];

/// One labelled point with error bars, in data units.
#[derive(Debug, Clone)]
pub struct PlotPoint {
    /// Text drawn next to the marker (XML-escaped on output).
    pub label: String,
    /// Horizontal position.
    pub x: f64,
    /// Left end of the horizontal error bar.
    pub x_lo: f64,
    /// Right end of the horizontal error bar.
    pub x_hi: f64,
    /// Vertical position.
    pub y: f64,
    /// Lower end of the vertical error bar.
    pub y_lo: f64,
    /// Upper end of the vertical error bar.
    pub y_hi: f64,
}

/// Renders a standalone SVG document (720 × 480 px) of `points`: a marker
/// per point in a palette colour, its error bars (x_lo..x_hi, y_lo..y_hi,
/// with end caps), and its label beside it; axes with tick labels at nice
/// steps (1, 2 or 5 × 10^k, about six per axis) and light grid lines.
///
/// Each axis spans every finite value among the points and their error bars,
/// plus 5% of the span on each side (±0.05 when the span is zero; 0..1 when
/// there are no finite values). Points whose x or y is not finite are
/// skipped, as are error bars with a non-finite end. Labels, title and axis
/// labels are XML-escaped. The output ends with "</svg>\n".
pub fn scatter_svg(points: &[PlotPoint], title: &str, x_label: &str, y_label: &str) -> String {
    let (x_min, x_max) = axis_range(points.iter().flat_map(|p| [p.x, p.x_lo, p.x_hi]));
    let (y_min, y_max) = axis_range(points.iter().flat_map(|p| [p.y, p.y_lo, p.y_hi]));
    let pw = WIDTH - LEFT - RIGHT;
    let ph = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x - x_min) / (x_max - x_min) * pw;
    let py = |y: f64| TOP + ph - (y - y_min) / (y_max - y_min) * ph;

    let mut s = String::new();
    // Writing to a String cannot fail; the results are ignored.
    let _ =
        writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"#);
    let _ = writeln!(s, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{:.2}" y="24" text-anchor="middle" font-size="16">{}</text>"#, WIDTH / 2.0, xml_escape(title));

    for (v, text) in ticks(x_min, x_max) {
        let x = px(v);
        let _ = writeln!(s, r##"<line x1="{x:.2}" y1="{TOP:.2}" x2="{x:.2}" y2="{:.2}" stroke="#e6e6e6"/>"##, TOP + ph);
        let _ = writeln!(s, r##"<line x1="{x:.2}" y1="{:.2}" x2="{x:.2}" y2="{:.2}" stroke="#333"/>"##, TOP + ph, TOP + ph + 5.0);
        let _ = writeln!(s, r#"<text x="{x:.2}" y="{:.2}" text-anchor="middle" font-size="11">{text}</text>"#, TOP + ph + 18.0);
    }
    for (v, text) in ticks(y_min, y_max) {
        let y = py(v);
        let _ = writeln!(s, r##"<line x1="{LEFT:.2}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="#e6e6e6"/>"##, LEFT + pw);
        let _ = writeln!(s, r##"<line x1="{:.2}" y1="{y:.2}" x2="{LEFT:.2}" y2="{y:.2}" stroke="#333"/>"##, LEFT - 5.0);
        let _ = writeln!(s, r#"<text x="{:.2}" y="{:.2}" text-anchor="end" font-size="11">{text}</text>"#, LEFT - 8.0, y + 4.0);
    }
    let _ = writeln!(s, r##"<rect x="{LEFT:.2}" y="{TOP:.2}" width="{pw:.2}" height="{ph:.2}" fill="none" stroke="#333"/>"##);
    let _ = writeln!(s, r#"<text x="{:.2}" y="{:.2}" text-anchor="middle" font-size="13">{}</text>"#, LEFT + pw / 2.0, HEIGHT - 14.0, xml_escape(x_label));
    let _ =
        writeln!(s, r#"<text transform="translate(18,{:.2}) rotate(-90)" text-anchor="middle" font-size="13">{}</text>"#, TOP + ph / 2.0, xml_escape(y_label));

    for (i, p) in points.iter().enumerate() {
        if !p.x.is_finite() || !p.y.is_finite() {
            continue;
        }
        let colour = PALETTE[i % PALETTE.len()];
        let (cx, cy) = (px(p.x), py(p.y));
        let cap = 4.0;
        let _ = writeln!(s, r#"<g stroke="{colour}" stroke-width="1.5">"#);
        if p.x_lo.is_finite() && p.x_hi.is_finite() {
            let (x1, x2) = (px(p.x_lo), px(p.x_hi));
            let _ = writeln!(s, r#"<line x1="{x1:.2}" y1="{cy:.2}" x2="{x2:.2}" y2="{cy:.2}"/>"#);
            for x in [x1, x2] {
                let _ = writeln!(s, r#"<line x1="{x:.2}" y1="{:.2}" x2="{x:.2}" y2="{:.2}"/>"#, cy - cap, cy + cap);
            }
        }
        if p.y_lo.is_finite() && p.y_hi.is_finite() {
            let (y1, y2) = (py(p.y_lo), py(p.y_hi));
            let _ = writeln!(s, r#"<line x1="{cx:.2}" y1="{y1:.2}" x2="{cx:.2}" y2="{y2:.2}"/>"#);
            for y in [y1, y2] {
                let _ = writeln!(s, r#"<line x1="{:.2}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}"/>"#, cx - cap, cx + cap);
            }
        }
        let _ = writeln!(s, "</g>");
        let _ = writeln!(s, r#"<circle cx="{cx:.2}" cy="{cy:.2}" r="4.5" fill="{colour}"/>"#);
        // Labels that would run off the right edge go to the marker's left.
        let approx_width = 6.5 * p.label.chars().count() as f64;
        let (lx, anchor) = if cx + 7.0 + approx_width > WIDTH { (cx - 7.0, "end") } else { (cx + 7.0, "start") };
        let _ = writeln!(s, r#"<text x="{lx:.2}" y="{:.2}" text-anchor="{anchor}" font-size="11" fill="{colour}">{}</text>"#, cy - 7.0, xml_escape(&p.label));
    }
    s.push_str("</svg>\n");
    s
}

/// Escapes `&`, `<`, `>`, `"` and `'` for XML text and attribute values.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Axis range of the finite values: 5% of the span added on each side,
/// ±0.05 for a zero span, (0, 1) when there are none.
fn axis_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= 1e-12 * lo.abs().max(hi.abs()).max(1e-300) {
        (lo - 0.05, hi + 0.05)
    } else {
        (lo - 0.05 * span, hi + 0.05 * span)
    }
}

/// Tick values and their labels inside [min, max]: multiples of a step of
/// 1, 2 or 5 × 10^k chosen for about six ticks; labels carry as many
/// decimals as the step needs.
fn ticks(min: f64, max: f64) -> Vec<(f64, String)> {
    let raw = (max - min) / 6.0;
    if raw.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !raw.is_finite() {
        return Vec::new();
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let step = mag
        * if norm < 1.5 {
            1.0
        } else if norm < 3.0 {
            2.0
        } else if norm < 7.0 {
            5.0
        } else {
            10.0
        };
    let decimals = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
    let first = (min / step - 1e-9).ceil() as i64;
    let last = (max / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
            (v, format!("{v:.decimals$}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(label: &str, x: f64, y: f64) -> PlotPoint {
        PlotPoint { label: label.into(), x, x_lo: x, x_hi: x, y, y_lo: y, y_hi: y }
    }

    #[test]
    fn markers_map_to_pixels() {
        // x data 0..10, 5% margin → [-0.5, 10.5] (span 11) over 620 px from 70:
        //   x = 0 → 70 + 620 · 0.5/11 = 70 + 28.18 = 98.18;
        //   x = 10 → 70 + 620 · 10.5/11 = 70 + 591.82 = 661.82.
        // y data 0..100 → [-5, 105] (span 110) over 380 px, top at 40:
        //   y = 0 → 40 + 380 - 380 · 5/110 = 420 - 17.27 = 402.73;
        //   y = 100 → 420 - 380 · 105/110 = 420 - 362.73 = 57.27.
        let svg = scatter_svg(&[pt("A", 0.0, 0.0), pt("B", 10.0, 100.0)], "t", "x", "y");
        assert!(svg.contains(r#"<circle cx="98.18" cy="402.73""#), "{svg}");
        assert!(svg.contains(r#"<circle cx="661.82" cy="57.27""#), "{svg}");
        assert!(svg.starts_with("<svg"));
        assert!(svg.ends_with("</svg>\n"));
        assert!(svg.contains(r#"width="720" height="480""#));
    }

    #[test]
    fn error_bars_set_the_range() {
        // Bars 0..10 and 0..100 give the same axes as above, so the marker at
        // (5, 50) sits in the middle: x = 70 + 310 = 380, y = 40 + 190 = 230,
        // and the bar ends map to 98.18 / 661.82 and 402.73 / 57.27.
        let p = PlotPoint { label: "mid".into(), x: 5.0, x_lo: 0.0, x_hi: 10.0, y: 50.0, y_lo: 0.0, y_hi: 100.0 };
        let svg = scatter_svg(&[p], "t", "x", "y");
        assert!(svg.contains(r#"<circle cx="380.00" cy="230.00""#), "{svg}");
        assert!(svg.contains(r#"<line x1="98.18" y1="230.00" x2="661.82" y2="230.00"/>"#), "{svg}");
        assert!(svg.contains(r#"<line x1="380.00" y1="402.73" x2="380.00" y2="57.27"/>"#), "{svg}");
    }

    #[test]
    fn degenerate_range_is_padded() {
        // One point at (1, 2): x axis [0.95, 1.05], y axis [1.95, 2.05];
        // the point is centred: (70 + 310, 40 + 190) = (380, 230).
        let svg = scatter_svg(&[pt("only", 1.0, 2.0)], "t", "x", "y");
        assert!(svg.contains(r#"<circle cx="380.00" cy="230.00""#), "{svg}");
        // x ticks every 0.02: 0.96 … 1.04.
        assert!(svg.contains(">0.96</text>") && svg.contains(">1.04</text>"), "{svg}");
    }

    #[test]
    fn labels_are_escaped() {
        let svg = scatter_svg(&[pt("a<b & \"c\">", 0.0, 0.0), pt("min_p=0.1", 1.0, 1.0)], "T & <U>", "x's", "y");
        assert!(svg.contains("a&lt;b &amp; &quot;c&quot;&gt;"));
        assert!(svg.contains(">min_p=0.1</text>"));
        assert!(svg.contains("T &amp; &lt;U&gt;"));
        assert!(svg.contains("x&apos;s"));
        assert!(!svg.contains("a<b"));
        // Two points, two palette colours.
        assert!(svg.contains(PALETTE[0]) && svg.contains(PALETTE[1]));
    }

    #[test]
    fn nice_ticks() {
        // Span 11 / 6 = 1.83 → step 2: 0, 2, …, 10.
        let t: Vec<String> = ticks(-0.5, 10.5).into_iter().map(|(_, s)| s).collect();
        assert_eq!(t, ["0", "2", "4", "6", "8", "10"]);
        // Span 0.1 / 6 = 0.0167 → step 0.02 from ceil(0.95/0.02) = 48 to floor(1.05/0.02) = 52.
        let t: Vec<String> = ticks(0.95, 1.05).into_iter().map(|(_, s)| s).collect();
        assert_eq!(t, ["0.96", "0.98", "1.00", "1.02", "1.04"]);
        // Span 1.1 / 6 = 0.183 → step 0.2; -0.0 prints as "0.0".
        let t: Vec<String> = ticks(-0.55, 0.55).into_iter().map(|(_, s)| s).collect();
        assert_eq!(t, ["-0.4", "-0.2", "0.0", "0.2", "0.4"]);
    }

    #[test]
    fn empty_and_non_finite() {
        let svg = scatter_svg(&[], "empty", "x", "y");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        let mut p = pt("nan", f64::NAN, 1.0);
        p.x_lo = f64::NAN;
        let svg = scatter_svg(&[p, pt("ok", 1.0, 1.0)], "t", "x", "y");
        assert_eq!(svg.matches("<circle").count(), 1);
    }
}
