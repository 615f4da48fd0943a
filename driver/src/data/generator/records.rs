//! Facts in long records: a personnel file of many records; the question asks for one field of
//! one record, found by another field.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::rng::Pcg32;
use super::vocab::{CITIES, DEPARTMENTS, FIRST_NAMES, LAST_NAMES};
use super::{position, Rendered, UniqueNames};
use crate::data::answers::Answer;

struct Person {
    record: i64,
    name: String,
    department: &'static str,
    city: &'static str,
    floor: i64,
    since: i64,
    badge: String,
    manager: String,
}

struct Draw<'a> {
    names: UniqueNames<'a>,
    records: HashSet<i64>,
    badges: HashSet<String>,
}

impl Draw<'_> {
    fn person(&mut self, rng: &mut Pcg32) -> Person {
        let name = self.names.next(rng);
        let record = loop {
            let r = rng.range(10_000, 99_999);
            if self.records.insert(r) {
                break r;
            }
        };
        let badge = loop {
            let letters: String = (0..2)
                .map(|_| char::from(b'A' + rng.below(26) as u8))
                .collect();
            let b = format!("{letters}-{}", rng.range(1000, 9999));
            if self.badges.insert(b.clone()) {
                break b;
            }
        };
        Person {
            record,
            name,
            department: rng.pick(DEPARTMENTS),
            city: rng.pick(CITIES),
            floor: rng.range(1, 9),
            since: rng.range(2003, 2023),
            badge,
            manager: format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES)),
        }
    }
}

fn write_record(out: &mut String, p: &Person) {
    let _ = write!(
        out,
        "Record {}\n  Name: {}\n  Department: {}\n  Office: {}, floor {}\n  Employed since: {}\n  Badge code: {}\n  Manager: {}\n\n",
        p.record, p.name, p.department, p.city, p.floor, p.since, p.badge, p.manager
    );
}

pub fn render(mut rng: Pcg32, flavour: usize, units: usize) -> Rendered {
    let mut draw = Draw {
        names: UniqueNames::new(FIRST_NAMES, LAST_NAMES, " "),
        records: HashSet::new(),
        badges: HashSet::new(),
    };
    let target = draw.person(&mut rng);
    let at = position(rng.below(1000), units);
    let mut people = Vec::with_capacity(units);
    while people.len() + 1 < units.max(1) {
        let p = draw.person(&mut rng);
        // The department-and-year question must have exactly one answer.
        if flavour == 2 && p.department == target.department && p.since == target.since {
            continue;
        }
        people.push(p);
    }
    let (question, answer) = match flavour {
        0 => (
            format!(
                "What is the badge code of {}? Answer with the badge code only.",
                target.name
            ),
            target.badge.clone(),
        ),
        1 => (
            format!(
                "In which city is the office of the employee whose badge code is {}? Answer with the city only.",
                target.badge
            ),
            target.city.to_string(),
        ),
        2 => (
            format!(
                "Which employee works in {} and has been employed since {}? Answer with the full name only.",
                target.department, target.since
            ),
            target.name.clone(),
        ),
        _ => (
            format!(
                "Who is the manager of the employee in record {}? Answer with the full name only.",
                target.record
            ),
            target.manager.clone(),
        ),
    };
    let mut prompt = String::from(
        "Below is an extract of a company's personnel file, one record per employee. Read it, then answer the question that follows it.\n\n",
    );
    for (i, p) in people.iter().enumerate() {
        if i == at {
            write_record(&mut prompt, &target);
        }
        write_record(&mut prompt, p);
    }
    if at >= people.len() {
        write_record(&mut prompt, &target);
    }
    prompt.push_str("Question: ");
    prompt.push_str(&question);
    Rendered {
        prompt,
        answer: Answer::Text(answer),
    }
}
