//! The printable report (报告单): one typed [`PrintableReport`] → an HTML page for the browser's print
//! (zh-CN, print CSS, the QR code as inline SVG, no script and no external resource) and a PDF (A4,
//! the caller's TrueType/OpenType CJK font subset and embedded as a CID font with a ToUnicode map, so
//! the text can be searched and extracted; the QR code drawn as vector squares). Both carry the same
//! text: header (alliance, site), report id, masked patient name, exam, findings, impression, signer,
//! signed time, key id, the recognition mark, and a QR code that encodes the verification URL.
//!
//! Pure: the font arrives as bytes (`app` reads it from the configured or standard path).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str};
use qrcode::{Color, QrCode};

/// Mutual recognition as printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrintRecognition {
    pub recognised: bool,
    /// `HR` when recognised.
    pub mark: Option<String>,
    pub scope: Option<String>,
    /// Local date-time text.
    pub valid_until: Option<String>,
    pub reasons: Vec<String>,
}

/// What the printed report shows. No patient identifier: the name arrives masked.
#[derive(Clone, Debug, Default)]
pub struct PrintableReport {
    pub alliance_name: String,
    pub site_name: String,
    /// `医学影像诊断报告` or `心电图诊断报告`.
    pub title: String,
    pub report_id: String,
    pub version: i64,
    pub patient_name_masked: Option<String>,
    pub modality: String,
    pub study_description: Option<String>,
    /// `YYYY-MM-DD`.
    pub study_date: Option<String>,
    pub accession_number: Option<String>,
    pub findings: String,
    pub impression: String,
    pub signer_name: String,
    pub signer_username: String,
    /// Local time text, `YYYY-MM-DD HH:MM:SS (UTC+08:00)`.
    pub signed_at: String,
    pub key_id: String,
    pub recognition: PrintRecognition,
    /// What the QR code encodes.
    pub verify_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error("the PDF font cannot be used: {0}")]
    Font(String),
    #[error("cannot make the QR code: {0}")]
    Qr(String),
}

impl PrintableReport {
    /// The recognition line as people read it.
    pub fn recognition_text(&self) -> String {
        let r = &self.recognition;
        if r.recognised {
            let mut s = format!("{} 互认", r.mark.as_deref().unwrap_or("HR"));
            if let Some(scope) = &r.scope {
                let _ = write!(s, "（范围：{scope}）");
            }
            if let Some(until) = &r.valid_until {
                let _ = write!(s, "，有效期至 {until}");
            }
            s
        } else if r.reasons.is_empty() {
            "不予互认".into()
        } else {
            format!("不予互认：{}", r.reasons.join("；"))
        }
    }

    fn exam_text(&self) -> String {
        match self.study_description.as_deref().map(str::trim) {
            // A description that names the modality already (`CT CHEST`) stands alone.
            Some(d) if d.starts_with(self.modality.as_str()) && !self.modality.is_empty() => {
                d.to_string()
            }
            Some(d) if !d.is_empty() => format!("{} {d}", self.modality),
            _ => self.modality.clone(),
        }
    }

    /// The labelled lines above the text blocks, in order.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            (
                "报告编号",
                format!("{}（第 {} 版）", self.report_id, self.version),
            ),
            (
                "患者",
                self.patient_name_masked
                    .clone()
                    .unwrap_or_else(|| "—".into()),
            ),
            ("检查", self.exam_text()),
        ];
        if let Some(d) = &self.study_date {
            f.push(("检查日期", d.clone()));
        }
        if let Some(a) = self.accession_number.as_deref().filter(|a| !a.is_empty()) {
            f.push(("检查号", a.to_string()));
        }
        f
    }

    fn signature_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "报告医师",
                format!("{}（{}）", self.signer_name, self.signer_username),
            ),
            ("签发时间", self.signed_at.clone()),
            ("签名密钥", self.key_id.clone()),
            ("结果互认", self.recognition_text()),
        ]
    }
}

/// The QR code's modules, row by row (`true` = dark), and its width.
pub fn qr_modules(data: &str) -> Result<(usize, Vec<bool>), PrintError> {
    let code = QrCode::new(data.as_bytes()).map_err(|e| PrintError::Qr(e.to_string()))?;
    let width = code.width();
    let modules = code
        .to_colors()
        .into_iter()
        .map(|c| c == Color::Dark)
        .collect();
    Ok((width, modules))
}

/// The QR code as an SVG element (4-module quiet zone), one path.
pub fn qr_svg(data: &str, size_px: u32) -> Result<String, PrintError> {
    let (w, modules) = qr_modules(data)?;
    let total = w + 8;
    let mut path = String::new();
    for (i, dark) in modules.iter().enumerate() {
        if *dark {
            let _ = write!(path, "M{} {}h1v1h-1z", i % w + 4, i / w + 4);
        }
    }
    Ok(format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="qr" width="{size_px}" height="{size_px}" viewBox="0 0 {total} {total}" shape-rendering="crispEdges" role="img" aria-label="核验二维码"><rect width="{total}" height="{total}" fill="#fff"/><path d="{path}" fill="#000"/></svg>"##
    ))
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The page's style sheet: the page embeds it in one `<style>` element, and the server allows exactly
/// it by hash in its Content-Security-Policy.
pub const PRINT_CSS: &str = "@page{size:A4;margin:18mm 16mm}\
body{font-family:\"WenQuanYi Micro Hei\",\"Noto Sans CJK SC\",\"Microsoft YaHei\",sans-serif;color:#000;max-width:180mm;margin:0 auto;font-size:11pt;line-height:1.6}\
header{display:flex;justify-content:space-between;align-items:flex-start;border-bottom:2px solid #000;padding-bottom:4mm}\
h1{font-size:18pt;margin:0}h2{font-size:12pt;margin:4mm 0 1mm}\
.site{font-size:12pt}dl{display:grid;grid-template-columns:22mm 1fr;margin:3mm 0;gap:1mm 3mm}dt{font-weight:bold}dd{margin:0}\
.text{white-space:pre-wrap;border:1px solid #999;padding:2mm 3mm;min-height:12mm}\
.hr{font-weight:bold}.no-hr{color:#555}figure{margin:0;text-align:center;font-size:8pt}\
.url{word-break:break-all;font-size:8pt}footer{margin-top:6mm;border-top:1px solid #000;padding-top:2mm}\
@media print{body{max-width:none}.url{color:#000}}";

/// The printable report as an HTML page (zh-CN).
pub fn html(r: &PrintableReport) -> Result<String, PrintError> {
    let qr = qr_svg(&r.verify_url, 120)?;
    let mut fields = String::new();
    for (k, v) in r.fields() {
        let _ = write!(fields, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
    }
    let mut signature = String::new();
    for (k, v) in r.signature_fields() {
        let class = if k == "结果互认" {
            if r.recognition.recognised {
                " class=\"hr\""
            } else {
                " class=\"no-hr\""
            }
        } else {
            ""
        };
        let _ = write!(signature, "<dt>{}</dt><dd{class}>{}</dd>", esc(k), esc(&v));
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{title} {id}</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{PRINT_CSS}</style></head>\
<body><header><div><div class=\"site\">{alliance} · {site}</div><h1>{title}</h1></div>\
<figure>{qr}<figcaption>扫码核验报告</figcaption></figure></header>\
<main><dl>{fields}</dl><h2>检查所见</h2><div class=\"text\">{findings}</div>\
<h2>诊断意见</h2><div class=\"text\">{impression}</div></main>\
<footer><dl>{signature}</dl><p class=\"url\">核验地址：{url}</p></footer></body></html>\n",
        title = esc(&r.title),
        id = esc(&r.report_id),
        alliance = esc(&r.alliance_name),
        site = esc(&r.site_name),
        findings = esc(&r.findings),
        impression = esc(&r.impression),
        url = esc(&r.verify_url),
    ))
}

// ---------------------------------------------------------------------------------------------
// PDF

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 50.0;
const QR_SIZE: f32 = 110.0;

/// One run of text placed on a page, as original glyph ids.
struct Run {
    page: usize,
    x: f32,
    y: f32,
    size: f32,
    glyphs: Vec<u16>,
}

struct Layout<'f> {
    face: &'f ttf_parser::Face<'f>,
    upem: f32,
    runs: Vec<Run>,
    rules: Vec<(usize, f32)>,
    page: usize,
    y: f32,
}

impl Layout<'_> {
    fn glyph(&self, c: char) -> u16 {
        self.face.glyph_index(c).map(|g| g.0).unwrap_or(0)
    }

    fn advance(&self, gid: u16, size: f32) -> f32 {
        f32::from(
            self.face
                .glyph_hor_advance(ttf_parser::GlyphId(gid))
                .unwrap_or(0),
        ) * size
            / self.upem
    }

    fn new_line(&mut self, height: f32) {
        self.y -= height;
        if self.y < MARGIN {
            self.page += 1;
            self.y = PAGE_H - MARGIN - height;
        }
    }

    /// Places `text` from `x` wrapped at the right margin; each line advances by `size * 1.5`.
    fn paragraph(&mut self, text: &str, x: f32, size: f32, max_x: f32) {
        for line in text.lines() {
            let mut glyphs = Vec::new();
            let mut width = 0.0;
            self.new_line(size * 1.5);
            for c in line.chars() {
                if c.is_control() {
                    continue;
                }
                let g = self.glyph(c);
                let adv = self.advance(g, size);
                if x + width + adv > max_x && !glyphs.is_empty() {
                    self.runs.push(Run {
                        page: self.page,
                        x,
                        y: self.y,
                        size,
                        glyphs: std::mem::take(&mut glyphs),
                    });
                    width = 0.0;
                    self.new_line(size * 1.5);
                }
                glyphs.push(g);
                width += adv;
            }
            if !glyphs.is_empty() {
                self.runs.push(Run {
                    page: self.page,
                    x,
                    y: self.y,
                    size,
                    glyphs,
                });
            }
        }
        if text.lines().next().is_none() {
            self.new_line(size * 1.5);
        }
    }

    fn field(&mut self, label: &str, value: &str, size: f32) {
        let label_w = 70.0;
        self.paragraph(label, MARGIN, size, MARGIN + label_w);
        // The value starts on the label's line.
        self.y += size * 1.5;
        self.paragraph(value, MARGIN + label_w, size, PAGE_W - MARGIN);
    }

    fn rule(&mut self) {
        self.new_line(8.0);
        self.rules.push((self.page, self.y));
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

/// The PostScript name of the face (ASCII letters and digits), for the subset's BaseFont.
fn postscript_name(face: &ttf_parser::Face<'_>) -> String {
    let name = face
        .names()
        .into_iter()
        .filter(|n| n.name_id == ttf_parser::name_id::POST_SCRIPT_NAME)
        .find_map(|n| n.to_string())
        .unwrap_or_default();
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if clean.is_empty() {
        "YilianCJK".into()
    } else {
        clean
    }
}

/// The printable report as a PDF, with `font` (a TrueType/OpenType file or collection; `index` picks
/// the face of a collection) subset and embedded.
pub fn pdf(r: &PrintableReport, font: &[u8], index: u32) -> Result<Vec<u8>, PrintError> {
    let face = ttf_parser::Face::parse(font, index).map_err(|e| PrintError::Font(e.to_string()))?;
    if face.glyph_index('报').is_none() {
        return Err(PrintError::Font(
            "the font has no Chinese glyphs (报)".into(),
        ));
    }
    let cff = face.tables().cff.is_some();
    let upem = f32::from(face.units_per_em());
    let mut l = Layout {
        face: &face,
        upem,
        runs: Vec::new(),
        rules: Vec::new(),
        page: 0,
        y: PAGE_H - MARGIN,
    };
    let text_right = PAGE_W - MARGIN - QR_SIZE - 10.0;
    l.paragraph(
        &format!("{} · {}", r.alliance_name, r.site_name),
        MARGIN,
        11.0,
        text_right,
    );
    l.paragraph(&r.title, MARGIN, 20.0, text_right);
    // Keep the header clear of the QR code.
    l.y = l.y.min(PAGE_H - MARGIN - QR_SIZE - 6.0);
    l.rule();
    for (k, v) in r.fields() {
        l.field(k, &v, 10.5);
    }
    l.rule();
    l.paragraph("检查所见", MARGIN, 12.0, PAGE_W - MARGIN);
    l.paragraph(&r.findings, MARGIN + 10.0, 10.5, PAGE_W - MARGIN);
    l.new_line(4.0);
    l.paragraph("诊断意见", MARGIN, 12.0, PAGE_W - MARGIN);
    l.paragraph(&r.impression, MARGIN + 10.0, 10.5, PAGE_W - MARGIN);
    l.rule();
    for (k, v) in r.signature_fields() {
        l.field(k, &v, 10.0);
    }
    l.new_line(4.0);
    l.paragraph("扫码或访问以下地址核验报告：", MARGIN, 9.0, PAGE_W - MARGIN);
    l.paragraph(&r.verify_url, MARGIN, 8.0, PAGE_W - MARGIN);
    let pages = l.page + 1;
    let runs = std::mem::take(&mut l.runs);
    let rules = std::mem::take(&mut l.rules);

    // Subset the font to the glyphs used; CIDs are the subset's glyph ids.
    let used: BTreeSet<u16> = runs.iter().flat_map(|r| r.glyphs.iter().copied()).collect();
    let mut remapper = subsetter::GlyphRemapper::new();
    for g in &used {
        remapper.remap(*g);
    }
    let subset = subsetter::subset(font, index, &remapper)
        .map_err(|e| PrintError::Font(format!("subsetting failed: {e:?}")))?;
    let widths: Vec<f32> = remapper
        .remapped_gids()
        .map(|old| {
            f32::from(
                face.glyph_hor_advance(ttf_parser::GlyphId(old))
                    .unwrap_or(0),
            ) * 1000.0
                / upem
        })
        .collect();
    let scale = |v: i16| f32::from(v) * 1000.0 / upem;

    let mut alloc = Ref::new(1);
    let mut next = || alloc.bump();
    let catalog_id = next();
    let tree_id = next();
    let type0_id = next();
    let cid_id = next();
    let descriptor_id = next();
    let file_id = next();
    let cmap_id = next();
    let page_ids: Vec<(Ref, Ref)> = (0..pages).map(|_| (next(), next())).collect();
    let font_name = format!("YLAAAA+{}", postscript_name(&face));

    let mut pdf = Pdf::new();
    pdf.catalog(catalog_id).pages(tree_id);
    pdf.pages(tree_id)
        .kids(page_ids.iter().map(|(p, _)| *p))
        .count(i32::try_from(pages).unwrap_or(i32::MAX));
    let mut info = pdf.document_info(next());
    info.title(pdf_writer::TextStr(&format!("{} {}", r.title, r.report_id)));
    info.producer(pdf_writer::TextStr("Yilian"));
    info.finish();

    pdf.type0_font(type0_id)
        .base_font(Name(font_name.as_bytes()))
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid_id)
        .to_unicode(cmap_id);
    let system_info = SystemInfo {
        registry: Str(b"Adobe"),
        ordering: Str(b"Identity"),
        supplement: 0,
    };
    let mut cid = pdf.cid_font(cid_id);
    cid.subtype(if cff {
        CidFontType::Type0
    } else {
        CidFontType::Type2
    });
    cid.base_font(Name(font_name.as_bytes()));
    cid.system_info(system_info);
    cid.font_descriptor(descriptor_id);
    cid.default_width(0.0);
    if !cff {
        cid.cid_to_gid_map_predefined(Name(b"Identity"));
    }
    cid.widths().consecutive(0, widths.iter().copied());
    cid.finish();

    let bbox = face.global_bounding_box();
    let mut fd = pdf.font_descriptor(descriptor_id);
    fd.name(Name(font_name.as_bytes()))
        .flags(FontFlags::SYMBOLIC)
        .bbox(Rect::new(
            scale(bbox.x_min),
            scale(bbox.y_min),
            scale(bbox.x_max),
            scale(bbox.y_max),
        ))
        .italic_angle(0.0)
        .ascent(scale(face.ascender()))
        .descent(scale(face.descender()))
        .cap_height(scale(face.capital_height().unwrap_or(face.ascender())))
        .stem_v(80.0);
    if cff {
        fd.font_file3(file_id);
    } else {
        fd.font_file2(file_id);
    }
    fd.finish();

    let compressed = deflate(&subset);
    let mut file = pdf.stream(file_id, &compressed);
    file.filter(Filter::FlateDecode);
    if cff {
        file.pair(Name(b"Subtype"), Name(b"OpenType"));
    } else {
        file.pair(
            Name(b"Length1"),
            i32::try_from(subset.len()).unwrap_or(i32::MAX),
        );
    }
    file.finish();

    // ToUnicode: each subset glyph back to the character it was laid out for.
    let mut chars: Vec<(u16, char)> = Vec::new();
    let all_text = format!(
        "{}{}{}{}{}{}",
        r.alliance_name, r.site_name, r.title, r.findings, r.impression, r.verify_url
    );
    let extra: String = r
        .fields()
        .into_iter()
        .chain(r.signature_fields())
        .flat_map(|(k, v)| [k.to_string(), v])
        .chain(["检查所见诊断意见扫码或访问以下地址核验报告：· ".to_string()])
        .collect();
    let mut seen = BTreeSet::new();
    for c in all_text.chars().chain(extra.chars()) {
        if let Some(g) = face.glyph_index(c)
            && let Some(new) = remapper.get(g.0)
            && seen.insert(new)
        {
            chars.push((new, c));
        }
    }
    let mut cmap = pdf_writer::types::UnicodeCmap::new(Name(b"Yilian-UCS"), system_info);
    for (g, c) in chars {
        cmap.pair(g, c);
    }
    pdf.cmap(cmap_id, &cmap.finish());

    let (qr_width, modules) = qr_modules(&r.verify_url)?;
    for (n, (page_id, content_id)) in page_ids.iter().enumerate() {
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree_id);
        page.contents(*content_id);
        page.resources().fonts().pair(Name(b"F1"), type0_id);
        page.finish();

        let mut c = Content::new();
        if n == 0 {
            // The QR code, top right, with a 4-module quiet zone.
            let total = (qr_width + 8) as f32;
            let m = QR_SIZE / total;
            let x0 = PAGE_W - MARGIN - QR_SIZE;
            let y_top = PAGE_H - MARGIN + 10.0;
            c.set_fill_rgb(0.0, 0.0, 0.0);
            for (i, dark) in modules.iter().enumerate() {
                if *dark {
                    let col = (i % qr_width + 4) as f32;
                    let row = (i / qr_width + 4) as f32;
                    c.rect(x0 + col * m, y_top - (row + 1.0) * m, m, m);
                }
            }
            c.fill_nonzero();
        }
        c.set_stroke_rgb(0.0, 0.0, 0.0);
        c.set_line_width(0.8);
        for (_, y) in rules.iter().filter(|(p, _)| *p == n) {
            c.move_to(MARGIN, *y + 4.0);
            c.line_to(PAGE_W - MARGIN, *y + 4.0);
        }
        c.stroke();
        c.begin_text();
        for run in runs.iter().filter(|r| r.page == n) {
            let mut bytes = Vec::with_capacity(run.glyphs.len() * 2);
            for g in &run.glyphs {
                bytes.extend_from_slice(&remapper.get(*g).unwrap_or(0).to_be_bytes());
            }
            c.set_font(Name(b"F1"), run.size);
            c.set_text_matrix([1.0, 0.0, 0.0, 1.0, run.x, run.y]);
            c.show(Str(&bytes));
        }
        c.end_text();
        let data = deflate(&c.finish());
        pdf.stream(*content_id, &data).filter(Filter::FlateDecode);
    }
    Ok(pdf.finish())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> PrintableReport {
        PrintableReport {
            alliance_name: "示范县医共体".into(),
            site_name: "红星乡卫生院".into(),
            title: "医学影像诊断报告".into(),
            report_id: "01JREPORT".into(),
            version: 1,
            patient_name_masked: Some("张*".into()),
            modality: "CT".into(),
            findings: "双肺纹理清晰。<script>".into(),
            impression: "未见明显异常。".into(),
            signer_name: "李医生".into(),
            signer_username: "li.reader".into(),
            signed_at: "2026-11-24 08:00:00 (UTC+08:00)".into(),
            key_id: "ed25519:0011".into(),
            recognition: PrintRecognition {
                recognised: true,
                mark: Some("HR".into()),
                scope: Some("县域".into()),
                valid_until: Some("2026-12-24".into()),
                reasons: vec![],
            },
            verify_url: "http://127.0.0.1:1/api/v1/reports/01JREPORT/verify".into(),
            ..PrintableReport::default()
        }
    }

    #[test]
    fn html_escapes_text_and_loads_nothing() {
        let page = html(&sample()).unwrap();
        assert!(page.contains("&lt;script&gt;"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("src="));
        assert!(!page.contains("href="));
        assert!(page.contains("HR 互认（范围：县域），有效期至 2026-12-24"));
        assert!(page.contains("<svg"));
    }

    #[test]
    fn recognition_text_lists_reasons_when_not_recognised() {
        let mut r = sample();
        r.recognition = PrintRecognition {
            reasons: vec!["超过有效期".into(), "未通过质控".into()],
            ..PrintRecognition::default()
        };
        assert_eq!(r.recognition_text(), "不予互认：超过有效期；未通过质控");
    }

    #[test]
    fn a_font_without_chinese_is_refused() {
        assert!(matches!(
            pdf(&sample(), b"not a font", 0),
            Err(PrintError::Font(_))
        ));
    }
}
