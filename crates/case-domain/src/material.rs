//! What the subscriber brings to a risk-graded review — explanations, evidence files,
//! an appeal — and the rules over it: which files are accepted (by content, never by
//! name), what the case still needs once material has arrived, and when a rejected
//! subscriber may appeal.

use std::fmt;

use chrono::{DateTime, Duration, Utc};

use crate::{
    CaseState, Msisdn,
    risk::{Need, RiskTier},
};

/// The largest evidence file accepted (5 MiB).
pub const MAX_EVIDENCE_BYTES: usize = 5 * 1024 * 1024;
/// The longest statement (explanation or appeal), in characters.
pub const MAX_STATEMENT_CHARS: usize = 4000;
/// The most counterparties one explanation may name.
pub const MAX_COUNTERPARTIES: usize = 20;
/// The longest `relation` or `purpose` of a counterparty, in characters.
pub const MAX_LABEL_CHARS: usize = 200;
/// Days after a rejection during which the subscriber may appeal.
pub const APPEAL_WINDOW_DAYS: i64 = 15;

/// How long after a rejection an appeal is accepted.
pub fn appeal_window() -> Duration {
    Duration::days(APPEAL_WINDOW_DAYS)
}

/// States in which the subscriber may add explanations and evidence: while security
/// (or CS) reviews the case, while an agent waits for their answer, and while a
/// partial restoration is under review.
pub fn accepts_material(state: CaseState) -> bool {
    use CaseState::*;
    matches!(
        state,
        SecurityReview
            | AwaitingCustomerSecurity
            | IdentityReview
            | AwaitingCustomerIdentity
            | PartiallyReactivated
    )
}

/// Whether material arriving in `state` answers an agent's information request
/// (the case then goes back to the state that asked, by `CustomerResponded`).
pub fn material_answers_request(state: CaseState) -> bool {
    matches!(
        state,
        CaseState::AwaitingCustomerSecurity | CaseState::AwaitingCustomerIdentity
    )
}

/// Checks a free-text statement: 1 to `max` characters once trimmed, no control
/// characters other than line breaks and tabs. The message never echoes the text.
pub fn check_text(text: &str, max: usize) -> Result<&str, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".into());
    }
    if trimmed.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed)
}

/// The kinds of evidence file accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvidenceType {
    /// A JPEG photo or scan.
    Jpeg,
    /// A PNG image (screenshots).
    Png,
    /// A PDF document without active content.
    Pdf,
}

impl EvidenceType {
    /// Every accepted type.
    pub const ALL: [EvidenceType; 3] = [Self::Jpeg, Self::Png, Self::Pdf];

    /// The media type recorded and shown.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Pdf => "application/pdf",
        }
    }

    /// Parses a recorded media type.
    pub fn parse(media_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.media_type() == media_type)
    }
}

/// Why a file was refused. Messages are safe to show to the uploader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentRefusal {
    /// No bytes.
    Empty,
    /// Larger than [`MAX_EVIDENCE_BYTES`].
    TooLarge {
        /// The size seen (at least; reading may have stopped early).
        size: usize,
    },
    /// The content is a program or an archive (whatever the file is called).
    Executable(&'static str),
    /// A PDF with active content (scripts, actions, links, forms, embedded files, rich media).
    ActivePdf(&'static str),
    /// A file that starts like a PDF but does not parse as one (or is encrypted, so
    /// its objects cannot be checked).
    UnreadablePdf,
    /// Neither JPEG, PNG nor PDF.
    Unrecognised,
}

impl fmt::Display for ContentRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("The file is empty."),
            Self::TooLarge { .. } => write!(
                f,
                "The file is larger than {} MiB.",
                MAX_EVIDENCE_BYTES / (1024 * 1024)
            ),
            Self::Executable(kind) => write!(
                f,
                "The file is {kind}, not a document; only JPEG, PNG or PDF files are accepted."
            ),
            Self::ActivePdf(what) => write!(
                f,
                "The PDF contains active content ({what}); upload a plain PDF, a JPEG or a PNG."
            ),
            Self::UnreadablePdf => f.write_str(
                "The PDF cannot be read (damaged or encrypted); upload a plain PDF, a JPEG or a PNG.",
            ),
            Self::Unrecognised => f.write_str(
                "The file's content is not JPEG, PNG or PDF (the file name does not matter).",
            ),
        }
    }
}

/// Signatures of programs and archives, refused wherever they claim to be a photo.
const EXECUTABLE_MAGIC: &[(&[u8], &str)] = &[
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a Linux program"),
    (b"#!", "a script"),
    (b"\xfe\xed\xfa\xce", "a macOS program"),
    (b"\xfe\xed\xfa\xcf", "a macOS program"),
    (b"\xce\xfa\xed\xfe", "a macOS program"),
    (b"\xcf\xfa\xed\xfe", "a macOS program"),
    (b"\xca\xfe\xba\xbe", "a macOS or Java program"),
    (b"PK\x03\x04", "an archive (ZIP, JAR, APK or Office)"),
    (b"PK\x05\x06", "an archive (ZIP)"),
];

const JPEG_MAGIC: &[u8] = b"\xff\xd8\xff";
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const PDF_MAGIC: &[u8] = b"%PDF-";

/// PDF names that make a document active (as a dictionary key or a name value), and
/// what they are called in the refusal. When a document holds several, the one
/// listed first is named: scripts before files, files before links.
const ACTIVE_PDF_NAMES: &[(&str, &str)] = &[
    ("JavaScript", "JavaScript"),
    ("JS", "JavaScript"),
    ("Launch", "a launch action"),
    ("EmbeddedFile", "an embedded file"),
    ("EmbeddedFiles", "an embedded file"),
    ("RichMedia", "rich media"),
    ("XFA", "an XFA form"),
    ("SubmitForm", "a form that submits data"),
    ("ImportData", "a data import action"),
    ("GoToR", "a link to another file"),
    ("GoToE", "a link to an embedded file"),
    ("URI", "a link to a web address"),
    ("OpenAction", "an action on opening"),
    ("AA", "an automatic action"),
];

/// The most any one stream of a PDF may decompress to while it is checked (an
/// evidence file is at most 5 MiB; this stops a small file inflating to gigabytes).
const PDF_MAX_DECOMPRESSED: usize = 16 * 1024 * 1024;

/// Recognises an evidence file by its content. Programs and archives are refused
/// first (a renamed `.exe` stays a program), then the content must start with the
/// JPEG, PNG or PDF signature; a PDF must parse and must not carry active content
/// (see [`check_pdf`]); a file with a ZIP directory at its end (a photo with an
/// archive appended) is refused too.
pub fn sniff(content: &[u8]) -> Result<EvidenceType, ContentRefusal> {
    if content.is_empty() {
        return Err(ContentRefusal::Empty);
    }
    if content.len() > MAX_EVIDENCE_BYTES {
        return Err(ContentRefusal::TooLarge {
            size: content.len(),
        });
    }
    if let Some((_, kind)) = EXECUTABLE_MAGIC
        .iter()
        .find(|(magic, _)| content.starts_with(magic))
    {
        return Err(ContentRefusal::Executable(kind));
    }
    let kind = if content.starts_with(JPEG_MAGIC) {
        EvidenceType::Jpeg
    } else if content.starts_with(PNG_MAGIC) {
        EvidenceType::Png
    } else if content.starts_with(PDF_MAGIC) {
        EvidenceType::Pdf
    } else {
        return Err(ContentRefusal::Unrecognised);
    };
    if has_trailing_zip_directory(content) {
        return Err(ContentRefusal::Executable(
            "a document with an archive appended",
        ));
    }
    if kind == EvidenceType::Pdf {
        check_pdf(content)?;
    }
    Ok(kind)
}

/// A ZIP archive ends with its end-of-central-directory record (`PK\x05\x06`) in
/// the last 64 KiB + 22 bytes; unzip tools open a photo with one appended.
fn has_trailing_zip_directory(content: &[u8]) -> bool {
    let tail = &content[content.len().saturating_sub(65_557)..];
    tail.windows(4).any(|w| w == b"PK\x05\x06")
}

/// Checks a PDF twice. First its bytes: any active name written in the clear, even
/// in an object no cross-reference table points to. Then its objects, parsed by
/// `lopdf` as a reader would, which includes the objects packed in compressed
/// object streams: once through the cross-reference data as written, and once with
/// that data rebuilt by scanning the file (as readers do with a damaged file), so an
/// object stream left out of the table is seen too. A file that does not parse, or
/// is encrypted with a password, is refused: its objects cannot be checked. No
/// input panics the caller (a parser panic is caught and refused).
pub fn check_pdf(pdf: &[u8]) -> Result<(), ContentRefusal> {
    if let Some(what) = active_pdf_content(pdf) {
        return Err(ContentRefusal::ActivePdf(what));
    }
    for rebuild in [false, true] {
        let options = lopdf::LoadOptions {
            max_decompressed_size: Some(PDF_MAX_DECOMPRESSED),
            force_reconstruct: rebuild,
            ..lopdf::LoadOptions::default()
        };
        let loaded = std::panic::catch_unwind(|| {
            lopdf::Document::load_mem_with_options(pdf, options).map(|doc| {
                let encrypted = doc.trailer.has(b"Encrypt") || doc.objects.is_empty();
                (encrypted, active_in_objects(doc.objects.values()))
            })
        });
        match loaded {
            Ok(Ok((false, None))) => {}
            Ok(Ok((false, Some(what)))) => return Err(ContentRefusal::ActivePdf(what)),
            Ok(Ok((true, _)) | Err(_)) | Err(_) => return Err(ContentRefusal::UnreadablePdf),
        }
    }
    Ok(())
}

/// The most telling active name among `objects` (the earliest in
/// [`ACTIVE_PDF_NAMES`]), looking at every dictionary key and name value, in
/// arrays, dictionaries and stream dictionaries alike.
fn active_in_objects<'a>(objects: impl Iterator<Item = &'a lopdf::Object>) -> Option<&'static str> {
    use lopdf::Object;
    let mut best: Option<usize> = None;
    let mut note = |name: &[u8]| {
        if let Some(i) = ACTIVE_PDF_NAMES
            .iter()
            .position(|(n, _)| n.as_bytes() == name)
        {
            best = Some(best.map_or(i, |b| b.min(i)));
        }
    };
    // An explicit stack: no recursion, whatever the nesting.
    let mut stack: Vec<&Object> = objects.collect();
    while let Some(object) = stack.pop() {
        match object {
            Object::Name(name) => note(name.as_slice()),
            Object::Array(items) => stack.extend(items.iter()),
            Object::Dictionary(dict) => {
                for (key, value) in dict.iter() {
                    note(key.as_slice());
                    stack.push(value);
                }
            }
            Object::Stream(stream) => {
                for (key, value) in stream.dict.iter() {
                    note(key.as_slice());
                    stack.push(value);
                }
            }
            _ => {}
        }
    }
    best.map(|i| ACTIVE_PDF_NAMES[i].1)
}

/// The most telling active-content name written in a PDF's bytes, if any. Names are
/// compared after decoding `#xx` escapes (`/J#61vaScript` is `/JavaScript`).
fn active_pdf_content(pdf: &[u8]) -> Option<&'static str> {
    let is_delimiter = |b: u8| {
        b.is_ascii_whitespace()
            || b == 0
            || matches!(
                b,
                b'/' | b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'%'
            )
    };
    let mut best = None;
    let mut i = 0;
    while i < pdf.len() {
        if pdf[i] != b'/' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < pdf.len() && !is_delimiter(pdf[end]) && end - start < 64 {
            end += 1;
        }
        let name = decode_pdf_name(&pdf[start..end]);
        if let Some(found) = ACTIVE_PDF_NAMES
            .iter()
            .position(|(n, _)| n.as_bytes() == name.as_slice())
        {
            best = Some(best.map_or(found, |b: usize| b.min(found)));
        }
        i = end.max(start);
    }
    best.map(|i| ACTIVE_PDF_NAMES[i].1)
}

fn decode_pdf_name(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'#'
            && let (Some(h), Some(l)) = (
                raw.get(i + 1).and_then(|b| hex(*b)),
                raw.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// A number as compared between the carrier's flagged list and the subscriber's
/// explanations: E.164 when it is a mainland mobile number, else as written.
fn comparable(number: &str) -> String {
    Msisdn::parse(number).map_or_else(|_| number.trim().to_owned(), |m| m.e164().to_owned())
}

/// The material a case holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Material<'a> {
    /// Explanations submitted.
    pub explanations: usize,
    /// Counterparties named in them (any form [`Msisdn::parse`] accepts).
    pub explained_contacts: &'a [String],
    /// Evidence files stored.
    pub evidence: usize,
}

/// What a case of `tier` still needs once `material` has arrived, given the
/// contacts the carrier flagged in the latest assessment.
///
/// `explanation` is satisfied when every flagged contact is named in an explanation
/// (or, when the carrier flagged none, when at least one explanation exists);
/// `evidence` when at least one file is stored. `security_review` and
/// `store_visit` stay: only an analyst's decision (or the visit) ends them.
pub fn remaining_needs(
    tier: RiskTier,
    flagged_contacts: &[String],
    material: &Material,
) -> Vec<Need> {
    let explained: Vec<String> = material
        .explained_contacts
        .iter()
        .map(|c| comparable(c))
        .collect();
    let explanation_done = if flagged_contacts.is_empty() {
        material.explanations > 0
    } else {
        material.explanations > 0
            && flagged_contacts
                .iter()
                .all(|f| explained.contains(&comparable(f)))
    };
    tier.needs()
        .iter()
        .copied()
        .filter(|need| match need {
            Need::Explanation => !explanation_done,
            Need::Evidence => material.evidence == 0,
            _ => true,
        })
        .collect()
}

/// Why an appeal is refused. Messages are safe to show to the subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppealRefusal {
    /// The case was already appealed once.
    AlreadyAppealed,
    /// The case is not rejected.
    NotRejected(CaseState),
    /// The extreme tier's remedy is a store visit, not an appeal.
    StoreVisitRequired,
    /// More than 15 days have passed since the rejection.
    WindowPassed {
        /// The last moment an appeal was possible.
        deadline: DateTime<Utc>,
    },
}

impl fmt::Display for AppealRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyAppealed => f.write_str(
                "This case was already appealed; a refusal can be appealed only once.",
            ),
            Self::NotRejected(state) => write!(
                f,
                "Only a rejected case can be appealed; this case is {state}."
            ),
            Self::StoreVisitRequired => f.write_str(
                "This refusal cannot be appealed online: visit a store of your carrier with your original ID card.",
            ),
            Self::WindowPassed { deadline } => write!(
                f,
                "The {APPEAL_WINDOW_DAYS}-day appeal period ended at {}.",
                deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        }
    }
}

/// Whether a case rejected at `rejected_at` may be appealed at `now`: once, within
/// [`APPEAL_WINDOW_DAYS`] days (the last instant included), never for the extreme
/// tier (its remedy is a store visit). `tier` is `None` when the case was refused
/// before any risk grading (by customer service).
pub fn may_appeal(
    rejected_at: DateTime<Utc>,
    now: DateTime<Utc>,
    already_appealed: bool,
    tier: Option<RiskTier>,
) -> Result<(), AppealRefusal> {
    if already_appealed {
        return Err(AppealRefusal::AlreadyAppealed);
    }
    if tier == Some(RiskTier::Extreme) {
        return Err(AppealRefusal::StoreVisitRequired);
    }
    let deadline = rejected_at + appeal_window();
    if now > deadline {
        return Err(AppealRefusal::WindowPassed { deadline });
    }
    Ok(())
}

/// A counterparty's number (a flagged contact, one named in an explanation) as shown
/// to agents and in the dossier: a mainland number masked like every `Msisdn`,
/// anything else reduced to its last four characters.
pub fn mask_counterparty(number: &str) -> String {
    Msisdn::parse(number).map_or_else(
        |_| {
            let chars: Vec<char> = number.trim().chars().collect();
            let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
            format!("*******{tail}")
        },
        |m| m.masked(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn counterparties_are_masked_whatever_their_form() {
        assert_eq!(super::mask_counterparty("+8613700137001"), "+86*******7001");
        assert_eq!(super::mask_counterparty("12345"), "*******2345");
        assert_eq!(super::mask_counterparty("12"), "*******12");
    }

    use super::*;

    fn png() -> Vec<u8> {
        let mut v = PNG_MAGIC.to_vec();
        v.extend_from_slice(b"\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0");
        v
    }

    /// A well-formed PDF (objects, a cross-reference table with the right offsets,
    /// a trailer) whose catalog carries `body` as written.
    fn pdf(body: &str) -> Vec<u8> {
        raw_pdf(&[
            format!("<< /Type /Catalog /Pages 2 0 R {body} >>"),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".into(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>".into(),
        ])
    }

    /// Objects 1..=n as written, with a correct cross-reference table; object 1 is the root.
    fn raw_pdf(objects: &[String]) -> Vec<u8> {
        let bytes: Vec<Vec<u8>> = objects.iter().map(|o| o.clone().into_bytes()).collect();
        raw_pdf_bytes(&bytes)
    }

    fn raw_pdf_bytes(objects: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"%PDF-1.7\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    #[test]
    fn the_content_table() {
        use ContentRefusal::*;
        use EvidenceType::*;
        let mut jpeg_with_zip = b"\xff\xd8\xff\xe0\0\x10JFIF".to_vec();
        jpeg_with_zip.extend_from_slice(b"PK\x03\x04....payload....PK\x05\x06\0\0\0\0");
        let cases: Vec<(&str, Vec<u8>, Result<EvidenceType, ContentRefusal>)> = vec![
            ("jpeg", b"\xff\xd8\xff\xe0\0\x10JFIF\0".to_vec(), Ok(Jpeg)),
            ("png", png(), Ok(Png)),
            ("plain pdf", pdf("/PageLayout /SinglePage"), Ok(Pdf)),
            // Deliberately refused since issue 11: an open action, even one that only
            // shows a page, is an action.
            (
                "pdf with an open action",
                pdf("/OpenAction [3 0 R /Fit]"),
                Err(ActivePdf("an action on opening")),
            ),
            (
                "not really a pdf",
                b"%PDF-1.7\nthis is not a document\n".to_vec(),
                Err(UnreadablePdf),
            ),
            ("empty", vec![], Err(Empty)),
            (
                "renamed exe",
                b"MZ\x90\0\x03\0\0\0\x04\0".to_vec(),
                Err(Executable("a Windows program")),
            ),
            (
                "elf",
                b"\x7fELF\x02\x01\x01".to_vec(),
                Err(Executable("a Linux program")),
            ),
            (
                "script",
                b"#!/bin/sh\nrm -rf /\n".to_vec(),
                Err(Executable("a script")),
            ),
            (
                "mach-o",
                b"\xcf\xfa\xed\xfe\x07\0\0\x01".to_vec(),
                Err(Executable("a macOS program")),
            ),
            (
                "jar",
                b"PK\x03\x04\x14\0\x08\0".to_vec(),
                Err(Executable("an archive (ZIP, JAR, APK or Office)")),
            ),
            (
                "jpeg with a zip appended",
                jpeg_with_zip,
                Err(Executable("a document with an archive appended")),
            ),
            (
                "pdf with javascript",
                pdf("/Names << /JavaScript 5 0 R >>"),
                Err(ActivePdf("JavaScript")),
            ),
            (
                "pdf with an open action running JS",
                pdf("/OpenAction << /S /JavaScript /JS (app.alert(1)) >>"),
                Err(ActivePdf("JavaScript")),
            ),
            (
                "pdf with /JS only",
                pdf("/AA << /O << /JS (x) >> >>"),
                Err(ActivePdf("JavaScript")),
            ),
            (
                "pdf with hex-escaped javascript",
                pdf("/OpenAction << /S /J#61vaScript >>"),
                Err(ActivePdf("JavaScript")),
            ),
            (
                "pdf with launch",
                pdf("/OpenAction << /S /Launch /F (cmd.exe) >>"),
                Err(ActivePdf("a launch action")),
            ),
            (
                "pdf with embedded file",
                pdf("/Names << /EmbeddedFiles 6 0 R >>"),
                Err(ActivePdf("an embedded file")),
            ),
            (
                "pdf with an embedded file stream",
                pdf("/Type /EmbeddedFile"),
                Err(ActivePdf("an embedded file")),
            ),
            (
                "pdf with rich media",
                pdf("/Annots [<< /Subtype /RichMedia >>]"),
                Err(ActivePdf("rich media")),
            ),
            ("gif", b"GIF89a\x01\0\x01\0".to_vec(), Err(Unrecognised)),
            (
                "text",
                b"hello, this is a photo".to_vec(),
                Err(Unrecognised),
            ),
            ("html", b"<html><script>".to_vec(), Err(Unrecognised)),
        ];
        for (name, content, expected) in cases {
            assert_eq!(sniff(&content), expected, "{name}");
        }
    }

    #[test]
    fn names_that_only_start_like_active_ones_pass() {
        assert_eq!(
            sniff(&pdf("/JSON 1 /Launcher 2 /JavaScripts 3")),
            Ok(EvidenceType::Pdf)
        );
    }

    /// PDFs built with `lopdf`: a one-page document with text, which `decorate` may
    /// change (catalog, page) before it is saved, with or without compressed object
    /// streams (and a cross-reference stream).
    fn generated(
        object_streams: bool,
        decorate: impl FnOnce(&mut lopdf::Document, &mut lopdf::Dictionary, &mut lopdf::Dictionary),
    ) -> Vec<u8> {
        use lopdf::{Document, Object, Stream, dictionary};
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
        });
        let content_id = doc.add_object(Stream::new(
            dictionary! {},
            b"BT /F1 12 Tf 72 712 Td (Statement of account) Tj ET".to_vec(),
        ));
        let mut page = dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
            "Contents" => content_id,
            "Resources" => dictionary! { "Font" => dictionary! { "F1" => font_id } },
        };
        let mut catalog = dictionary! { "Type" => "Catalog", "Pages" => pages_id };
        decorate(&mut doc, &mut catalog, &mut page);
        let page_id = doc.add_object(page);
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1,
            }),
        );
        let catalog_id = doc.add_object(catalog);
        doc.trailer.set("Root", catalog_id);
        doc.compress();
        let mut out = Vec::new();
        if object_streams {
            doc.save_modern(&mut out).expect("saved");
        } else {
            doc.save_to(&mut out).expect("saved");
        }
        out
    }

    fn action(doc: &mut lopdf::Document, kind: &str, extra: lopdf::Dictionary) -> lopdf::ObjectId {
        let mut a = lopdf::dictionary! { "Type" => "Action", "S" => kind };
        a.extend(&extra);
        doc.add_object(a)
    }

    #[test]
    fn generated_plain_pdfs_pass_with_and_without_object_streams() {
        for object_streams in [false, true] {
            let plain = generated(object_streams, |_, _, _| {});
            assert_eq!(
                sniff(&plain),
                Ok(EvidenceType::Pdf),
                "object streams: {object_streams}"
            );
        }
        // An internal link to a page of the same file is not active.
        let goto = generated(true, |doc, _, page| {
            let a = action(
                doc,
                "GoTo",
                lopdf::dictionary! { "D" => vec![0.into(), "Fit".into()] },
            );
            page.set(
                "Annots",
                vec![lopdf::dictionary! { "Subtype" => "Link", "Rect" => vec![0.into(), 0.into(), 9.into(), 9.into()], "A" => a }.into()],
            );
        });
        assert_eq!(sniff(&goto), Ok(EvidenceType::Pdf));
    }

    #[test]
    fn generated_pdfs_with_each_kind_of_active_content_are_refused() {
        use lopdf::{Object, Stream, dictionary};
        type Decorate = fn(&mut lopdf::Document, &mut lopdf::Dictionary, &mut lopdf::Dictionary);
        fn js() -> Object {
            Object::string_literal("app.alert(1)")
        }
        let cases: Vec<(&str, Decorate, &str)> = vec![
            (
                "document JavaScript in the names tree",
                (|doc, catalog, _| {
                    let a = action(doc, "JavaScript", dictionary! { "JS" => js() });
                    catalog.set("Names", dictionary! {
                        "JavaScript" => dictionary! { "Names" => vec![Object::string_literal("x"), a.into()] },
                    });
                }),
                "JavaScript",
            ),
            (
                "a JS entry in a link's action",
                (|doc, _, page| {
                    let a = doc.add_object(dictionary! { "S" => "Named", "JS" => js() });
                    page.set(
                        "Annots",
                        vec![dictionary! { "Subtype" => "Link", "A" => a }.into()],
                    );
                }),
                "JavaScript",
            ),
            (
                "a launch action",
                (|doc, catalog, _| {
                    let a = action(
                        doc,
                        "Launch",
                        dictionary! { "F" => Object::string_literal("cmd.exe") },
                    );
                    catalog.set("OpenAction", a);
                }),
                "a launch action",
            ),
            (
                "an open action",
                (|_, catalog, _| {
                    catalog.set("OpenAction", vec![0.into(), "Fit".into()]);
                }),
                "an action on opening",
            ),
            (
                "an automatic action on a page",
                (|doc, _, page| {
                    let a = action(
                        doc,
                        "GoTo",
                        dictionary! { "D" => vec![0.into(), "Fit".into()] },
                    );
                    page.set("AA", dictionary! { "O" => a });
                }),
                "an automatic action",
            ),
            (
                "a link to a web address",
                (|doc, _, page| {
                    let a = action(
                        doc,
                        "URI",
                        dictionary! { "URI" => Object::string_literal("https://example.com/") },
                    );
                    page.set(
                        "Annots",
                        vec![dictionary! { "Subtype" => "Link", "A" => a }.into()],
                    );
                }),
                "a link to a web address",
            ),
            (
                "a form that submits",
                (|doc, catalog, _| {
                    let a = action(
                        doc,
                        "SubmitForm",
                        dictionary! { "F" => Object::string_literal("https://example.com/") },
                    );
                    let field = doc.add_object(dictionary! { "FT" => "Btn", "T" => Object::string_literal("send"), "A" => a });
                    catalog.set("AcroForm", dictionary! { "Fields" => vec![field.into()] });
                }),
                "a form that submits data",
            ),
            (
                "a link to another file",
                (|doc, _, page| {
                    let a = action(
                        doc,
                        "GoToR",
                        dictionary! { "F" => Object::string_literal("other.pdf"), "D" => vec![0.into(), "Fit".into()] },
                    );
                    page.set(
                        "Annots",
                        vec![dictionary! { "Subtype" => "Link", "A" => a }.into()],
                    );
                }),
                "a link to another file",
            ),
            (
                "an embedded file",
                (|doc, catalog, _| {
                    let file = doc.add_object(Stream::new(
                        dictionary! { "Type" => "EmbeddedFile" },
                        b"MZ payload".to_vec(),
                    ));
                    let spec = doc.add_object(dictionary! {
                        "Type" => "Filespec", "F" => Object::string_literal("a.exe"), "EF" => dictionary! { "F" => file },
                    });
                    catalog.set("Names", dictionary! {
                        "EmbeddedFiles" => dictionary! { "Names" => vec![Object::string_literal("a.exe"), spec.into()] },
                    });
                }),
                "an embedded file",
            ),
            (
                "an XFA form",
                (|doc, catalog, _| {
                    let xfa = doc.add_object(Stream::new(dictionary! {}, b"<xdp:xdp/>".to_vec()));
                    catalog.set(
                        "AcroForm",
                        dictionary! { "Fields" => Vec::<Object>::new(), "XFA" => xfa },
                    );
                }),
                "an XFA form",
            ),
            (
                "rich media",
                (|_, _, page| {
                    page.set(
                        "Annots",
                        vec![dictionary! { "Subtype" => "RichMedia" }.into()],
                    );
                }),
                "rich media",
            ),
        ];
        for (name, decorate, what) in cases {
            for object_streams in [false, true] {
                let file = generated(object_streams, decorate);
                assert_eq!(
                    sniff(&file),
                    Err(ContentRefusal::ActivePdf(what)),
                    "{name} (object streams: {object_streams})"
                );
            }
        }
    }

    #[test]
    fn an_action_hidden_in_a_compressed_object_stream_is_found() {
        use lopdf::{Object, dictionary};
        let file = generated(true, |doc, catalog, _| {
            let a = action(
                doc,
                "JavaScript",
                dictionary! { "JS" => Object::string_literal("app.launchURL('x')") },
            );
            catalog.set("OpenAction", a);
        });
        // Nothing active is written in the clear: only the parser can see it.
        assert_eq!(active_pdf_content(&file), None);
        assert!(file.windows(7).any(|w| w == b"/ObjStm"), "an object stream");
        assert_eq!(sniff(&file), Err(ContentRefusal::ActivePdf("JavaScript")));
    }

    #[test]
    fn unparseable_and_hostile_pdfs_are_refused_without_panic() {
        use lopdf::{Stream, dictionary};
        assert_eq!(
            sniff(b"%PDF-1.4\n\x00\x01garbage%%EOF"),
            Err(ContentRefusal::UnreadablePdf)
        );
        // A decompression bomb: an object stream that inflates past the limit (the
        // same file inflating to just under it passes).
        let with_object_stream_of = |inflated: usize| {
            let mut packed = Stream::new(dictionary! {}, vec![b' '; inflated]);
            packed.compress().unwrap();
            assert!(packed.content.len() < 100 * 1024);
            let mut object = format!(
                "<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length {} >>\nstream\n",
                packed.content.len()
            )
            .into_bytes();
            object.extend_from_slice(&packed.content);
            object.extend_from_slice(b"\nendstream");
            raw_pdf_bytes(&[
                b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>".to_vec(),
                object,
            ])
        };
        assert_eq!(
            sniff(&with_object_stream_of(PDF_MAX_DECOMPRESSED - 1024)),
            Ok(EvidenceType::Pdf)
        );
        assert_eq!(
            sniff(&with_object_stream_of(PDF_MAX_DECOMPRESSED + 1024)),
            Err(ContentRefusal::UnreadablePdf)
        );
        // Deep nesting and truncation: refused or accepted, never a panic.
        let mut deep = b"%PDF-1.7\n1 0 obj\n".to_vec();
        deep.extend(std::iter::repeat_n(b'[', 100_000));
        let _ = sniff(&deep);
        let plain = generated(true, |_, _, _| {});
        for cut in [10, plain.len() / 3, plain.len() / 2, plain.len() - 10] {
            let _ = sniff(&plain[..cut]);
        }
    }

    #[test]
    fn size_is_limited() {
        let mut big = b"\xff\xd8\xff".to_vec();
        big.resize(MAX_EVIDENCE_BYTES, 0);
        assert_eq!(sniff(&big), Ok(EvidenceType::Jpeg));
        big.push(0);
        assert_eq!(
            sniff(&big),
            Err(ContentRefusal::TooLarge {
                size: MAX_EVIDENCE_BYTES + 1
            })
        );
    }

    #[test]
    fn need_names_round_trip() {
        for n in Need::ALL {
            assert_eq!(Need::parse(n.as_str()), Some(n));
        }
        assert_eq!(Need::parse("nothing"), None);
    }

    #[test]
    fn media_types_round_trip() {
        for t in EvidenceType::ALL {
            assert_eq!(EvidenceType::parse(t.media_type()), Some(t));
        }
        assert_eq!(EvidenceType::parse("application/x-msdownload"), None);
    }

    #[test]
    fn refusals_never_echo_content() {
        for r in [
            ContentRefusal::Empty,
            ContentRefusal::TooLarge { size: 1 },
            ContentRefusal::Executable("a Windows program"),
            ContentRefusal::ActivePdf("JavaScript"),
            ContentRefusal::Unrecognised,
        ] {
            assert!(r.to_string().ends_with('.'), "{r}");
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn explanation_needs_every_flagged_contact() {
        let flagged = strings(&["+8613700137001", "+8613700137002"]);
        let none = Material::default();
        assert_eq!(
            remaining_needs(RiskTier::Medium, &flagged, &none),
            vec![Need::Explanation, Need::SecurityReview]
        );
        let one = strings(&["13700137001"]);
        let partly = Material {
            explanations: 1,
            explained_contacts: &one,
            evidence: 0,
        };
        assert_eq!(
            remaining_needs(RiskTier::Medium, &flagged, &partly),
            vec![Need::Explanation, Need::SecurityReview]
        );
        // Any accepted form of the number counts.
        let both = strings(&["137 0013 7001", "+86 137-0013-7002"]);
        let all = Material {
            explanations: 2,
            explained_contacts: &both,
            evidence: 0,
        };
        assert_eq!(
            remaining_needs(RiskTier::Medium, &flagged, &all),
            vec![Need::SecurityReview]
        );
    }

    #[test]
    fn without_flagged_contacts_one_explanation_is_enough() {
        let material = Material {
            explanations: 1,
            explained_contacts: &[],
            evidence: 0,
        };
        assert_eq!(
            remaining_needs(RiskTier::Medium, &[], &Material::default()),
            vec![Need::Explanation, Need::SecurityReview]
        );
        assert_eq!(
            remaining_needs(RiskTier::Medium, &[], &material),
            vec![Need::SecurityReview]
        );
    }

    #[test]
    fn evidence_needs_one_file_and_review_stays() {
        let high = |explanations, evidence| {
            remaining_needs(
                RiskTier::High,
                &[],
                &Material {
                    explanations,
                    explained_contacts: &[],
                    evidence,
                },
            )
        };
        assert_eq!(
            high(0, 0),
            vec![Need::Explanation, Need::Evidence, Need::SecurityReview]
        );
        assert_eq!(high(1, 0), vec![Need::Evidence, Need::SecurityReview]);
        assert_eq!(high(0, 1), vec![Need::Explanation, Need::SecurityReview]);
        assert_eq!(high(3, 2), vec![Need::SecurityReview]);
        // Material never changes what the extreme or low tier needs.
        assert_eq!(
            remaining_needs(
                RiskTier::Extreme,
                &[],
                &Material {
                    explanations: 1,
                    explained_contacts: &[],
                    evidence: 1
                }
            ),
            vec![Need::StoreVisit]
        );
        assert!(remaining_needs(RiskTier::Low, &[], &Material::default()).is_empty());
    }

    #[test]
    fn the_appeal_rule() {
        let rejected = DateTime::<Utc>::UNIX_EPOCH + Duration::days(100);
        let day = |d: i64| rejected + Duration::days(d);
        let deadline = day(APPEAL_WINDOW_DAYS);
        use AppealRefusal::*;
        type Case = (
            DateTime<Utc>,
            bool,
            Option<RiskTier>,
            Result<(), AppealRefusal>,
        );
        let cases: &[Case] = &[
            (day(0), false, Some(RiskTier::Medium), Ok(())),
            (day(14), false, Some(RiskTier::High), Ok(())),
            (deadline, false, Some(RiskTier::Medium), Ok(())),
            (day(1), false, None, Ok(())),
            (
                deadline + Duration::seconds(1),
                false,
                Some(RiskTier::Medium),
                Err(WindowPassed { deadline }),
            ),
            (day(1), true, Some(RiskTier::Medium), Err(AlreadyAppealed)),
            (
                day(1),
                false,
                Some(RiskTier::Extreme),
                Err(StoreVisitRequired),
            ),
            (day(30), true, Some(RiskTier::Extreme), Err(AlreadyAppealed)),
        ];
        for (now, appealed, tier, expected) in cases {
            assert_eq!(
                may_appeal(rejected, *now, *appealed, *tier),
                *expected,
                "{now} {appealed} {tier:?}"
            );
        }
        assert!(WindowPassed { deadline }.to_string().contains("15-day"));
    }

    #[test]
    fn material_is_taken_while_a_review_is_open() {
        use CaseState::*;
        let accepted: Vec<CaseState> = CaseState::ALL
            .into_iter()
            .filter(|s| accepts_material(*s))
            .collect();
        assert_eq!(
            accepted,
            [
                IdentityReview,
                AwaitingCustomerIdentity,
                SecurityReview,
                AwaitingCustomerSecurity,
                PartiallyReactivated
            ]
        );
        // Where material answers a request, the table lets the subscriber respond.
        for s in CaseState::ALL
            .into_iter()
            .filter(|s| material_answers_request(*s))
        {
            assert!(accepts_material(s));
            assert!(
                crate::decide(
                    s,
                    crate::CaseEvent::CustomerResponded,
                    crate::Role::Customer
                )
                .is_ok(),
                "{s}"
            );
        }
    }

    #[test]
    fn statements_are_checked_without_echo() {
        assert_eq!(check_text("  hello\nworld ", 11), Ok("hello\nworld"));
        assert!(check_text("   ", 10).is_err());
        assert!(check_text(&"字".repeat(11), 10).is_err());
        assert!(check_text(&"字".repeat(10), 10).is_ok());
        assert!(check_text("a\0b", 10).is_err());
    }
}
