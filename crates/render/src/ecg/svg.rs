//! The ECG scene as an SVG document in millimetres: grid lines as two paths (1 mm and 5 mm), one
//! path per trace clipped to its row, text escaped for XML.

use std::fmt::Write;

use super::layout::{Page, Rect, Scene, Text};

pub(crate) const GRID_MINOR: &str = "#f4c4c4";
pub(crate) const GRID_MAJOR: &str = "#e38a8a";
const TRACE: &str = "#141414";
const FONTS: &str = "'Noto Sans CJK SC','Source Han Sans SC','PingFang SC','Microsoft YaHei',\
                     'WenQuanYi Micro Hei',sans-serif";

pub(crate) fn write(scene: &Scene) -> String {
    let mut s = String::with_capacity(256 * 1024 * scene.pages.len());
    // Writing to a String cannot fail; the results are ignored for that reason only.
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}mm\" height=\"{h}mm\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"{FONTS}\">",
        w = num(scene.width),
        h = num(scene.height),
    );
    s.push_str("<defs>");
    for (p, page) in scene.pages.iter().enumerate() {
        for (r, row) in page.rows.iter().enumerate() {
            let _ = write!(s, "<clipPath id=\"{}\">", clip_id(p, r));
            rect(&mut s, &row.clip, "");
            s.push_str("</clipPath>");
        }
    }
    s.push_str("</defs>");
    rect(
        &mut s,
        &Rect {
            x: 0.0,
            y: 0.0,
            w: scene.width,
            h: scene.height,
        },
        " fill=\"#fff\"",
    );
    for (p, page) in scene.pages.iter().enumerate() {
        write_page(&mut s, p, page);
    }
    s.push_str("</svg>");
    s
}

fn clip_id(page: usize, row: usize) -> String {
    format!("yilian-ecg-p{page}-r{row}")
}

fn write_page(s: &mut String, p: usize, page: &Page) {
    let _ = write!(s, "<g class=\"ecg-page\" data-page=\"{p}\">");
    s.push_str("<g class=\"header\">");
    for t in &page.texts {
        text(s, t, "");
    }
    s.push_str("</g>");
    grid(s, &page.grid);
    for (r, row) in page.rows.iter().enumerate() {
        let _ = write!(
            s,
            "<g class=\"row\" clip-path=\"url(#{})\" fill=\"none\" stroke=\"{TRACE}\" \
             stroke-linejoin=\"round\" stroke-linecap=\"round\">",
            clip_id(p, r)
        );
        s.push_str("<path class=\"cal\" stroke-width=\"0.3\" d=\"");
        polyline(s, &row.cal);
        s.push_str("\"/>");
        for tr in &row.traces {
            let _ = write!(
                s,
                "<path class=\"trace\" data-lead=\"{}\" data-role=\"{}\" stroke-width=\"0.28\" d=\"",
                escape(&tr.lead),
                tr.role.as_str()
            );
            polyline(s, &tr.points);
            s.push_str("\"/>");
        }
        if !row.separators.is_empty() {
            s.push_str("<path class=\"separator\" stroke-width=\"0.3\" d=\"");
            for &(x, y0, y1) in &row.separators {
                let _ = write!(s, "M{} {}V{}", num(x), num(y0), num(y1));
            }
            s.push_str("\"/>");
        }
        s.push_str("</g>");
        for tr in &row.traces {
            let attrs = format!(
                " data-lead=\"{}\" data-role=\"{}\"",
                escape(&tr.lead),
                tr.role.as_str()
            );
            text(s, &tr.label, &attrs);
        }
    }
    s.push_str("</g>");
}

/// Every whole millimetre of the grid area: the 5 mm lines in one path, the others in another.
fn grid(s: &mut String, g: &Rect) {
    let (x0, y0) = (g.x.round() as i64, g.y.round() as i64);
    let (x1, y1) = (x0 + g.w.round() as i64, y0 + g.h.round() as i64);
    for (class, major, colour, width) in [
        ("grid-minor", false, GRID_MINOR, "0.1"),
        ("grid-major", true, GRID_MAJOR, "0.2"),
    ] {
        let _ = write!(
            s,
            "<path class=\"{class}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\" d=\""
        );
        for x in x0..=x1 {
            if ((x - x0) % 5 == 0) == major {
                let _ = write!(s, "M{x} {y0}V{y1}");
            }
        }
        for y in y0..=y1 {
            if ((y - y0) % 5 == 0) == major {
                let _ = write!(s, "M{x0} {y}H{x1}");
            }
        }
        s.push_str("\"/>");
    }
}

fn rect(s: &mut String, r: &Rect, attrs: &str) {
    let _ = write!(
        s,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"{attrs}/>",
        num(r.x),
        num(r.y),
        num(r.w),
        num(r.h)
    );
}

fn polyline(s: &mut String, points: &[(f64, f64)]) {
    for (k, &(x, y)) in points.iter().enumerate() {
        let _ = write!(s, "{}{} {}", if k == 0 { "M" } else { " " }, num(x), num(y));
    }
}

fn text(s: &mut String, t: &Text, attrs: &str) {
    let content = fit(&t.text, t.max_width, t.size);
    let _ = write!(
        s,
        "<text class=\"{}\" x=\"{}\" y=\"{}\" font-size=\"{}\"{}{attrs}>{}</text>",
        t.kind.class(),
        num(t.x),
        num(t.y),
        num(t.size),
        if t.bold { " font-weight=\"bold\"" } else { "" },
        escape(&content)
    );
}

/// The text cut with an ellipsis to fit `max_width` mm, estimating a CJK character at one em and
/// anything else at 0.55 em (the browser's real font decides the final width).
fn fit(text: &str, max_width: f64, size: f64) -> String {
    let width = |c: char| if is_wide(c) { size } else { 0.55 * size };
    let total: f64 = text.chars().map(width).sum();
    if total <= max_width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = width('…');
    for c in text.chars() {
        used += width(c);
        if used > max_width {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

fn is_wide(c: char) -> bool {
    matches!(u32::from(c), 0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD)
}

/// XML-escapes text and attribute values; characters XML 1.0 forbids (most C0 controls) become
/// U+FFFD so the document always parses.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Millimetres with two decimals (10 µm), trailing zeros dropped: small and deterministic.
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}
