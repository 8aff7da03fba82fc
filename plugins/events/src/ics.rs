//! iCalendar (RFC 5545) export: one `VCALENDAR` with a `VEVENT` per event.
//!
//! What the RFC asks of a producer, and where it is done here:
//!
//! - Lines end in CRLF (§3.1) — [`Calendar::line`].
//! - Lines longer than 75 octets are folded: CRLF followed by one space
//!   (§3.1), never inside a UTF-8 sequence — [`fold`].
//! - TEXT values escape `\`, `;`, `,` and newlines (§3.3.11); other control
//!   characters are not allowed in values and are dropped — [`escape_text`].
//! - Date-times are UTC in basic format, `20251124T100000Z` (§3.3.5).
//! - Each `VEVENT` has `UID` and `DTSTAMP` (§3.6.1). The UID is the record id
//!   with `@cnode`, so it stays the same when the calendar is fetched again;
//!   `DTSTAMP` is the record's creation time, so an unchanged event gives
//!   byte-identical output.

use crate::{event::Event, geo, time};

/// The longest content line, octets, not counting the CRLF (RFC 5545 §3.1).
pub const MAX_LINE_OCTETS: usize = 75;

/// Escapes a TEXT value: `\` → `\\`, `;` → `\;`, `,` → `\,`, a line break
/// (CRLF, LF or CR) → `\n`; other control characters except tab are dropped.
pub fn escape_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\\n");
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A URI value (`URL`): not TEXT, so nothing is escaped, but control
/// characters (which no valid URI holds) are dropped.
fn uri_value(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

/// Folds one content line (without its CRLF) into pieces of at most 75
/// octets, each continuation starting with a space, joined by CRLF. Splits
/// only between characters, so a piece may be shorter than 75 octets.
pub fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + line.len() / 64 * 3);
    // The first piece may hold 75 octets; a continuation's leading space
    // counts, leaving 74 for content.
    let mut room = MAX_LINE_OCTETS;
    let mut used = 0;
    for c in line.chars() {
        let len = c.len_utf8();
        if used + len > room {
            out.push_str("\r\n ");
            room = MAX_LINE_OCTETS - 1;
            used = 0;
        }
        out.push(c);
        used += len;
    }
    out
}

/// What the calendar is about, for its header.
#[derive(Debug, Clone)]
pub struct CalendarInfo<'a> {
    /// The region (4-character geohash).
    pub region: &'a str,
}

/// A calendar being written.
struct Calendar {
    out: String,
}

impl Calendar {
    /// Writes `NAME:value`, folded, with CRLF.
    fn line(&mut self, name: &str, value: &str) {
        let mut line = String::with_capacity(name.len() + 1 + value.len());
        line.push_str(name);
        line.push(':');
        line.push_str(value);
        self.out.push_str(&fold(&line));
        self.out.push_str("\r\n");
    }

    /// Writes a TEXT property, escaped.
    fn text(&mut self, name: &str, value: &str) {
        self.line(name, &escape_text(value));
    }
}

/// The whole `.ics` document for `events`, in the order given.
pub fn calendar(info: &CalendarInfo<'_>, events: &[Event]) -> String {
    let mut cal = Calendar {
        out: String::with_capacity(256 + events.len() * 400),
    };
    cal.line("BEGIN", "VCALENDAR");
    cal.line("VERSION", "2.0");
    cal.line(
        "PRODID",
        concat!(
            "-//cnode//org.cnode.events plugin ",
            env!("CARGO_PKG_VERSION"),
            "//EN"
        ),
    );
    cal.line("CALSCALE", "GREGORIAN");
    cal.line("METHOD", "PUBLISH");
    // Widely used, not in the RFC: the name calendar apps show.
    cal.text("X-WR-CALNAME", &format!("Events in {}", info.region));
    for event in events {
        vevent(&mut cal, event);
    }
    cal.line("END", "VCALENDAR");
    cal.out
}

fn vevent(cal: &mut Calendar, event: &Event) {
    cal.line("BEGIN", "VEVENT");
    cal.line("UID", &format!("{}@cnode", event.id));
    cal.line("DTSTAMP", &time::ics_utc(event.created_at));
    cal.line("DTSTART", &time::ics_utc(event.starts_at));
    // Without DTEND a DATE-TIME event ends when it starts (§3.6.1), which is
    // what an event without `ends_at` means.
    if let Some(ends_at) = event.ends_at {
        cal.line("DTEND", &time::ics_utc(ends_at));
    }
    cal.text("SUMMARY", &event.title);
    if !event.place.is_empty() {
        cal.text("LOCATION", &event.place);
    }
    if let Some((lat, lon)) = geo::point(&event.geohash) {
        // GEO is two FLOATs separated by an unescaped `;` (§3.8.1.6).
        cal.line("GEO", &format!("{lat:.6};{lon:.6}"));
    }
    if let Some(description) = event.description.as_deref().filter(|d| !d.is_empty()) {
        cal.text("DESCRIPTION", description);
    }
    if let Some(url) = &event.url {
        cal.line("URL", &uri_value(url));
    }
    cal.line("END", "VEVENT");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            id: "ab".repeat(32),
            author: "did:key:z6Mk".into(),
            geohash: "w5q6u8g".into(),
            created_at: 1_763_900_000_000,
            title: "Market; food, music \\ more".into(),
            starts_at: 1_763_978_400_000,
            ends_at: Some(1_763_989_200_000),
            place: "Tha Phae Gate".into(),
            description: Some("Line one\nLine two\r\nLine three".into()),
            url: Some("https://example.org/market?a=1,2;b".into()),
            image: None,
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_text("a,b;c\\d"), "a\\,b\\;c\\\\d");
        assert_eq!(escape_text("1\n2\r\n3\r4"), "1\\n2\\n3\\n4");
        assert_eq!(escape_text("tab\there"), "tab\there");
        assert_eq!(escape_text("bell\u{7}nul\u{0}del\u{7f}"), "bellnuldel");
        assert_eq!(escape_text("ตลาด: \"quoted\""), "ตลาด: \"quoted\"");
        // Escaping twice is visible (no accidental idempotence that would
        // hide a missing escape).
        assert_eq!(escape_text(&escape_text(",")), "\\\\\\,");
    }

    #[test]
    fn folding() {
        assert_eq!(fold("short"), "short");
        let exact = "x".repeat(75);
        assert_eq!(fold(&exact), exact);
        let long = "y".repeat(75 + 74 + 10);
        let folded = fold(&long);
        let pieces: Vec<&str> = folded.split("\r\n").collect();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0].len(), 75);
        assert_eq!(pieces[1].len(), 75);
        assert!(pieces[1].starts_with(' '));
        assert_eq!(pieces[2], format!(" {}", "y".repeat(10)));
        // Thai characters are 3 octets: a fold never cuts one.
        let thai = "ก".repeat(60);
        let folded = fold(&thai);
        for piece in folded.split("\r\n") {
            assert!(piece.len() <= 75, "{} octets", piece.len());
        }
        assert_eq!(folded.split("\r\n").next().map(str::len), Some(75));
        assert_eq!(unfold(&folded), thai);
        // A 4-octet emoji straddling octet 75 moves to the next piece.
        let emoji = format!("{}😀", "z".repeat(73));
        let folded = fold(&emoji);
        assert_eq!(folded, format!("{}\r\n 😀", "z".repeat(73)));
    }

    /// Unfolding as a reader does (RFC 5545 §3.1).
    fn unfold(text: &str) -> String {
        text.replace("\r\n ", "")
    }

    #[test]
    fn one_event() {
        let ics = calendar(&CalendarInfo { region: "w5q6" }, &[event()]);
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
        // CRLF everywhere, no bare LF or CR.
        assert_eq!(ics.matches('\n').count(), ics.matches("\r\n").count());
        assert_eq!(ics.matches('\r').count(), ics.matches("\r\n").count());
        for line in ics.split("\r\n") {
            assert!(line.len() <= MAX_LINE_OCTETS, "{line:?}");
        }
        let lines: Vec<String> = unfold(&ics).split("\r\n").map(String::from).collect();
        let uid = format!("UID:{}@cnode", "ab".repeat(32));
        let expected = [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            concat!(
                "PRODID:-//cnode//org.cnode.events plugin ",
                env!("CARGO_PKG_VERSION"),
                "//EN"
            ),
            "CALSCALE:GREGORIAN",
            "METHOD:PUBLISH",
            "X-WR-CALNAME:Events in w5q6",
            "BEGIN:VEVENT",
            &uid,
            "DTSTAMP:20251123T121320Z",
            "DTSTART:20251124T100000Z",
            "DTEND:20251124T130000Z",
            "SUMMARY:Market\\; food\\, music \\\\ more",
            "LOCATION:Tha Phae Gate",
            "GEO:18.769455;98.991623",
            "DESCRIPTION:Line one\\nLine two\\nLine three",
            "URL:https://example.org/market?a=1,2;b",
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ];
        assert_eq!(lines, expected);
    }

    #[test]
    fn optional_fields_and_long_values() {
        let mut e = event();
        e.ends_at = None;
        e.description = None;
        e.url = None;
        e.place = String::new();
        e.geohash = "w5q6".into();
        e.title = "ก".repeat(200);
        let ics = calendar(&CalendarInfo { region: "w5q6" }, &[e.clone(), event()]);
        let unfolded = unfold(&ics);
        let first = unfolded.split("BEGIN:VEVENT").nth(1).expect("first event");
        for absent in ["DTEND", "DESCRIPTION", "URL", "LOCATION", "GEO"] {
            assert!(
                !first.contains(&format!("\r\n{absent}:")),
                "{absent} in {first}"
            );
        }
        assert!(first.contains(&format!("SUMMARY:{}\r\n", e.title)));
        assert_eq!(unfolded.matches("BEGIN:VEVENT").count(), 2);
        for line in ics.split("\r\n") {
            assert!(line.len() <= MAX_LINE_OCTETS);
        }
    }

    #[test]
    fn empty_calendar() {
        let ics = calendar(&CalendarInfo { region: "u33d" }, &[]);
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
        assert!(!ics.contains("VEVENT"));
    }
}
