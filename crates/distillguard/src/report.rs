//! `scan --html`: the console's views of a log, with no server.
//!
//! One self-contained page (the console's inline style, SVG drawn here, no script, nothing
//! fetched from elsewhere) that an analyst can open from a file or attach to a ticket: the
//! accounts ranked by score, the groups of linked accounts, and for each flagged account its
//! reasons in words and the timeline of its escalations (when it became `suspicious`, then
//! `distilling`, at which score and exchange).

use std::collections::HashMap;
use std::io::Write;

use detect::{AccountReport, GroupReport, Verdict, VerdictChange};
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// Accounts listed in the ranking at most (every flagged one is detailed below it).
const RANKED: usize = 500;
/// Flagged accounts detailed at most.
const DETAILED: usize = 200;

fn class(v: Verdict) -> &'static str {
    match v {
        Verdict::Distilling => "distilling",
        Verdict::Suspicious => "suspicious",
        Verdict::Benign => "benign",
    }
}

/// The escalations of one account over the log's time, as an SVG step line.
fn escalations(changes: &[&VerdictChange], from_ms: i64, to_ms: i64) -> Markup {
    let (w, h, pad) = (480.0, 70.0, 10.0);
    let span = (to_ms - from_ms).max(1) as f64;
    let x = |ts: &str| {
        let t = exchange::Timestamp::parse(ts).map_or(from_ms, |t| t.millis());
        pad + (t - from_ms) as f64 / span * (w - 2.0 * pad)
    };
    let y = |v: Verdict| match v {
        Verdict::Benign => h - pad,
        Verdict::Suspicious => h / 2.0,
        Verdict::Distilling => pad,
    };
    let mut points = vec![format!("{pad:.1},{:.1}", y(Verdict::Benign))];
    for c in changes {
        let cx = x(&c.ts);
        points.push(format!("{cx:.1},{:.1}", y(c.from)));
        points.push(format!("{cx:.1},{:.1}", y(c.to)));
    }
    let last = changes.last().map_or(Verdict::Benign, |c| c.to);
    points.push(format!("{:.1},{:.1}", w - pad, y(last)));
    html! {
        svg role="img" width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } xmlns="http://www.w3.org/2000/svg" {
            title { "Verdict over the log's time: " (changes.len()) " escalations" }
            rect x="0" y="0" width=(w) height=(h) fill="#ffffff" stroke="#d1d5db" {}
            polyline points=(points.join(" ")) fill="none" stroke="#1f2937" stroke-width="2" {}
        }
    }
}

/// Writes the report of one scan.
pub fn write(
    out: &mut impl Write,
    log_name: &str,
    exchanges: u64,
    bad_lines: u64,
    reports: &[AccountReport],
    groups: &[GroupReport],
    changes: &[VerdictChange],
) -> std::io::Result<()> {
    let mut ranked: Vec<&AccountReport> = reports.iter().collect();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
    let count = |v: Verdict| reports.iter().filter(|r| r.verdict == v).count();
    let mut by_account: HashMap<&str, Vec<&VerdictChange>> = HashMap::new();
    for c in changes {
        by_account.entry(c.account.as_str()).or_default().push(c);
    }
    let times: Vec<i64> = changes
        .iter()
        .filter_map(|c| exchange::Timestamp::parse(&c.ts).ok().map(|t| t.millis()))
        .collect();
    let (from_ms, to_ms) = (
        times.iter().copied().min().unwrap_or(0),
        times.iter().copied().max().unwrap_or(1),
    );
    let flagged: Vec<&&AccountReport> = ranked
        .iter()
        .filter(|r| r.verdict > Verdict::Benign)
        .take(DETAILED)
        .collect();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "distillguard scan of " (log_name) }
                link rel="icon" href="data:,";
                style { (PreEscaped(gateway::CONSOLE_STYLE)) }
            }
            body { main {
                h1 { "Scan of " (log_name) }
                section aria-label="Summary" .cards {
                    div.card { b { (exchanges) } "exchanges" }
                    div.card { b { (reports.len()) } "accounts" }
                    div.card { b.distilling { (count(Verdict::Distilling)) } "distilling" }
                    div.card { b.suspicious { (count(Verdict::Suspicious)) } "suspicious" }
                    div.card { b { (groups.len()) } "groups of linked accounts" }
                    div.card { b { (bad_lines) } "bad lines" }
                }
                h2 { "Accounts, highest score first" }
                table {
                    thead { tr { th scope="col" { "Account" } th scope="col" { "Score" } th scope="col" { "Verdict" } th scope="col" { "Exchanges" } th scope="col" { "First flagged" } th scope="col" { "Group" } } }
                    tbody {
                        @for r in ranked.iter().take(RANKED) {
                            tr {
                                td { @if r.verdict > Verdict::Benign { a href={ "#acct-" (r.account) } { (r.account) } } @else { (r.account) } }
                                td { (format!("{:.3}", r.score)) }
                                td class=(class(r.verdict)) { (r.verdict.as_str()) }
                                td { (r.exchanges) }
                                td { (r.first_flagged.as_deref().unwrap_or("")) }
                                td { (r.cluster.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
                @if ranked.len() > RANKED { p { (ranked.len() - RANKED) " more accounts, all scored lower, are not listed." } }
                h2 { "Groups of linked accounts" }
                table {
                    thead { tr { th scope="col" { "Group" } th scope="col" { "Score" } th scope="col" { "Verdict" } th scope="col" { "Members" } th scope="col" { "Linked by" } } }
                    tbody {
                        @for g in groups {
                            tr {
                                td { (g.cluster) }
                                td { (format!("{:.3}", g.score)) }
                                td class=(class(g.verdict)) { (g.verdict.as_str()) }
                                td { (g.members.join(", ")) }
                                td { (g.links.iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", ")) }
                            }
                        }
                    }
                }
                h2 { "Flagged accounts" }
                @for r in &flagged {
                    section id={ "acct-" (r.account) } {
                        h3 { (r.account) " " span class=(class(r.verdict)) { (r.verdict.as_str()) } " " (format!("{:.3}", r.score)) }
                        @let esc = by_account.get(r.account.as_str()).cloned().unwrap_or_default();
                        (escalations(&esc, from_ms, to_ms))
                        ul {
                            @for c in &esc {
                                li { (c.ts) ": " (c.from.as_str()) " to " (c.to.as_str()) " at score " (format!("{:.3}", c.score)) @if !c.exchange.is_empty() { " (exchange " (c.exchange) ")" } }
                            }
                        }
                        table {
                            thead { tr { th scope="col" { "Signal" } th scope="col" { "Weight" } th scope="col" { "In words" } } }
                            tbody { @for reason in &r.reasons { tr { td { (reason.signal) } td { (reason.value) } td { (reason.detail) } } } }
                        }
                    }
                }
            } }
        }
    };
    out.write_all(page.into_string().as_bytes())
}
