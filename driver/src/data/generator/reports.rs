//! Summarising a generated report into named points: a long report (incident, quarterly sales,
//! project status, audit) states five key facts once each among many paragraphs of routine notes
//! and a decoy for each (a value that was suspected, planned or earlier); the question asks for
//! the five points by name.

use std::collections::BTreeMap;

use super::rng::Pcg32;
use super::vocab::{DEPARTMENTS, FIRST_NAMES, LAST_NAMES, NOUNS, REGIONS, SERVICES};
use super::{position, Rendered};
use crate::data::answers::Answer;

/// Where a point's values come from.
enum Values {
    Pool(&'static [&'static str]),
    Person,
}

/// A named point: its values, the sentence that states it and a decoy sentence (`{v}` is the value).
struct Point {
    name: &'static str,
    values: Values,
    states: &'static str,
    decoy: &'static str,
}

struct Kind {
    title: &'static str,
    points: [Point; 5],
}

const KINDS: [Kind; 4] = [
    Kind {
        title: "Post-incident report",
        points: [
            Point {
                name: "Root cause",
                values: Values::Pool(&[
                    "an expired TLS certificate on the load balancer",
                    "a full disk on the primary database",
                    "a faulty configuration push to the DNS servers",
                    "a memory leak in the session cache",
                    "a missing index after a schema migration",
                    "clock skew between the token servers",
                ]),
                states: "The investigation established that the root cause was {v}.",
                decoy: "Early in the incident the team suspected {v}, but this was ruled out.",
            },
            Point {
                name: "Affected service",
                values: Values::Pool(SERVICES),
                states: "Customers could not use the {v} service during the incident; no other service was down.",
                decoy: "The {v} service showed higher latency at first, but it stayed available throughout.",
            },
            Point {
                name: "Duration",
                values: Values::Pool(&[
                    "47 minutes",
                    "1 hour 20 minutes",
                    "2 hours 5 minutes",
                    "3 hours 40 minutes",
                    "5 hours 15 minutes",
                ]),
                states: "Full service was restored {v} after the first alert.",
                decoy: "A previous, unrelated incident last spring lasted {v}.",
            },
            Point {
                name: "Owner",
                values: Values::Person,
                states: "{v} owns the follow-up work and will report on it at the next review.",
                decoy: "{v} joined the incident call as an observer.",
            },
            Point {
                name: "Follow-up",
                values: Values::Pool(&[
                    "automate certificate renewal",
                    "alert when disk usage passes 80 percent",
                    "require a second review for configuration pushes",
                    "add memory limits to the session cache",
                    "check index coverage in migration tests",
                    "synchronise the clocks with a dedicated time source",
                ]),
                states: "The agreed follow-up action is to {v}.",
                decoy: "The team discussed a proposal to {v}, but decided against it.",
            },
        ],
    },
    Kind {
        title: "Quarterly sales report",
        points: [
            Point {
                name: "Best region",
                values: Values::Pool(REGIONS),
                states: "The {v} region had the strongest quarter of all regions.",
                decoy: "The {v} region started the quarter well but fell back in the last month.",
            },
            Point {
                name: "Revenue",
                values: Values::Pool(&[
                    "4.2 million euros",
                    "5.8 million euros",
                    "3.1 million euros",
                    "7.4 million euros",
                    "6.6 million euros",
                ]),
                states: "Total revenue for the quarter came to {v}.",
                decoy: "The budget had assumed revenue of {v}.",
            },
            Point {
                name: "Growth",
                values: Values::Pool(&["3 percent", "7 percent", "12 percent", "18 percent", "24 percent"]),
                states: "Compared with the same quarter last year, sales grew by {v}.",
                decoy: "Analysts had expected growth of {v}.",
            },
            Point {
                name: "Main risk",
                values: Values::Pool(&[
                    "rising freight costs",
                    "the pending insolvency of a key customer",
                    "currency swings against the dollar",
                    "a delayed product launch",
                    "staff shortages in the warehouse",
                ]),
                states: "The main risk for the next quarter is {v}.",
                decoy: "The board also looked at {v} as a risk, but judged it minor.",
            },
            Point {
                name: "Next step",
                values: Values::Pool(&[
                    "open a sales office in Lyon",
                    "renegotiate the freight contracts",
                    "hire four account managers",
                    "launch the online catalogue",
                    "cut the number of product variants",
                ]),
                states: "The board decided that the next step is to {v}.",
                decoy: "A suggestion to {v} was postponed to next year.",
            },
        ],
    },
    Kind {
        title: "Project status report",
        points: [
            Point {
                name: "Milestone reached",
                values: Values::Pool(&[
                    "the data migration",
                    "the beta release",
                    "the security review",
                    "the hardware rollout",
                    "the user training",
                ]),
                states: "This month the project completed {v}.",
                decoy: "The team also prepared {v}, which is scheduled for next month.",
            },
            Point {
                name: "Delay",
                values: Values::Pool(&["one week", "two weeks", "three weeks", "five weeks", "six weeks"]),
                states: "Overall the project is {v} behind its original plan.",
                decoy: "At the last report the delay had been estimated at {v}.",
            },
            Point {
                name: "Blocker",
                values: Values::Pool(&[
                    "a missing vendor contract",
                    "an unresolved licensing question",
                    "the lack of test hardware",
                    "a pending legal review",
                    "an open security finding",
                ]),
                states: "The main blocker at the moment is {v}.",
                decoy: "Earlier the team was held up by {v}, which has since been resolved.",
            },
            Point {
                name: "Budget used",
                values: Values::Pool(&["38 percent", "52 percent", "61 percent", "74 percent", "89 percent"]),
                states: "So far the project has used {v} of its budget.",
                decoy: "The plan had foreseen using {v} of the budget by now.",
            },
            Point {
                name: "Decision needed",
                values: Values::Pool(&[
                    "whether to extend the pilot to all sites",
                    "which cloud provider to use",
                    "whether to hire a second tester",
                    "whether to drop the reporting module",
                    "when to retire the old system",
                ]),
                states: "The steering committee now needs to decide {v}.",
                decoy: "Last month the committee settled the question of {v}.",
            },
        ],
    },
    Kind {
        title: "Internal audit report",
        points: [
            Point {
                name: "Findings",
                values: Values::Pool(&["3 findings", "5 findings", "7 findings", "9 findings", "11 findings"]),
                states: "In total this audit recorded {v}.",
                decoy: "The previous audit had recorded {v}.",
            },
            Point {
                name: "Most severe finding",
                values: Values::Pool(&[
                    "shared administrator passwords",
                    "missing backups of the payroll database",
                    "unreviewed access rights of former staff",
                    "unencrypted laptops in the sales team",
                    "invoices approved without a second signature",
                ]),
                states: "The most severe finding concerns {v}.",
                decoy: "A finding about {v} from the last audit has been closed.",
            },
            Point {
                name: "Deadline",
                values: Values::Pool(&["the end of March", "the end of June", "15 September", "30 November", "the end of the year"]),
                states: "All findings must be fixed by {v}.",
                decoy: "An earlier draft had proposed {v} as the deadline.",
            },
            Point {
                name: "Auditor",
                values: Values::Person,
                states: "The audit was led by {v}.",
                decoy: "{v} provided the access logs for the audit.",
            },
            Point {
                name: "Recommendation",
                values: Values::Pool(&[
                    "introduce a password manager",
                    "test restores every month",
                    "review access rights every quarter",
                    "enforce disk encryption on all laptops",
                    "require two signatures on every invoice",
                ]),
                states: "The main recommendation is to {v}.",
                decoy: "A recommendation to {v} from a previous audit has been implemented.",
            },
        ],
    },
];

/// Routine sentences that fill the report; none states a point. `{p}` person, `{d}` department,
/// `{s}` service, `{n}` noun, `{w}` weekday, `{h}` hour, `{k}` a count.
const FILLER: &[&str] = &[
    "On {w}, {p} from {d} walked the team through the {n} dashboards.",
    "{p} updated the runbook for the {s} service and asked for comments by {w}.",
    "At {h}:00 the {d} team held its weekly check-in; {k} people attended.",
    "{p} noted that the {n} figures were in line with the previous weeks.",
    "The {s} service passed its routine health checks on {w}.",
    "{p} circulated the minutes of the {w} meeting to {d}.",
    "A question from {d} about the {n} export was answered by {p} the same day.",
    "{k} tickets about the {n} report were closed during the week.",
    "{p} and {q} agreed to merge the two {n} trackers into one.",
    "The monthly review of the {s} service is planned for {w} at {h}:30.",
    "{d} asked for read access to the {n} archive, which {p} granted.",
    "No changes were made to the {s} configuration on {w}.",
];

const WEEKDAYS: &[&str] = &["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"];

fn person(rng: &mut Pcg32) -> String {
    format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES))
}

fn value(rng: &mut Pcg32, values: &Values) -> String {
    match values {
        Values::Pool(pool) => rng.pick(pool).to_string(),
        Values::Person => person(rng),
    }
}

/// A value of the same pool other than `not`.
fn other_value(rng: &mut Pcg32, values: &Values, not: &str) -> String {
    loop {
        let v = value(rng, values);
        if v != not {
            return v;
        }
    }
}

fn filler_sentence(rng: &mut Pcg32) -> String {
    let template = rng.pick(FILLER);
    template
        .replace("{p}", &person(rng))
        .replace("{q}", &person(rng))
        .replace("{d}", rng.pick(DEPARTMENTS))
        .replace("{s}", rng.pick(SERVICES))
        .replace("{n}", rng.pick(NOUNS))
        .replace("{w}", rng.pick(WEEKDAYS))
        .replace("{h}", &rng.range(8, 17).to_string())
        .replace("{k}", &rng.range(3, 19).to_string())
}

/// Capitalises the first letter: values like "an expired ..." can open a sentence.
fn capitalised(s: String) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => s,
    }
}

pub fn render(mut rng: Pcg32, flavour: usize, units: usize) -> Rendered {
    let kind = &KINDS[flavour % KINDS.len()];
    let units = units.max(1);
    // The key facts, their decoys, and where each goes, drawn before the filler.
    let mut inserts: Vec<(usize, String)> = Vec::new();
    let mut answer = BTreeMap::new();
    for point in &kind.points {
        let v = value(&mut rng, &point.values);
        let decoy = other_value(&mut rng, &point.values, &v);
        inserts.push((
            position(rng.below(1000), units),
            capitalised(point.states.replace("{v}", &v)),
        ));
        inserts.push((
            position(rng.below(1000), units),
            capitalised(point.decoy.replace("{v}", &decoy)),
        ));
        answer.insert(point.name.to_string(), v);
    }
    let week = rng.range(2, 50);
    let mut paragraphs: Vec<Vec<String>> = (0..units)
        .map(|_| (0..3).map(|_| filler_sentence(&mut rng)).collect())
        .collect();
    for (at, sentence) in inserts {
        let paragraph = &mut paragraphs[at];
        let slot = rng.index(paragraph.len() + 1);
        paragraph.insert(slot, sentence);
    }
    let names: Vec<&str> = kind.points.iter().map(|p| p.name).collect();
    let mut prompt = format!(
        "Below is a report. Read it, then answer the request that follows it.\n\n{} (week {week})\n\n",
        kind.title
    );
    for paragraph in &paragraphs {
        prompt.push_str(&paragraph.join(" "));
        prompt.push_str("\n\n");
    }
    prompt.push_str(&format!(
        "Request: Summarise the report in exactly five lines, one per point, each line starting with the point's name and a colon: {}. State each point in a few words, as the report gives it.",
        names.join(", ")
    ));
    Rendered {
        prompt,
        answer: Answer::Points(answer),
    }
}
