//! Following a chain of relations: many one-step statements (forwarding rules, reporting lines,
//! train legs), shuffled; the question follows one chain a number of steps or to its end.

use super::rng::Pcg32;
use super::vocab::{FIRST_NAMES, LAST_NAMES, STATIONS};
use super::{Rendered, UniqueNames};
use crate::data::answers::Answer;

const PLACE_KINDS: &[&str] = &[
    "Yard", "Point", "Depot", "Cross", "Harbour", "Gate", "Mill", "Bridge",
];
const LINES: &[&str] = &["red", "blue", "green", "amber", "grey", "violet"];

/// Writes one statement from (from, to, the train line).
type Statement = fn(&str, &str, &str) -> String;

/// How far the question follows the chain.
enum Follow {
    ToEnd,
    Steps(usize),
}

pub fn render(mut rng: Pcg32, flavour: usize, units: usize) -> Rendered {
    let mut places = UniqueNames::new(STATIONS, PLACE_KINDS, " ");
    let mut people = UniqueNames::new(FIRST_NAMES, LAST_NAMES, " ");
    let people_flavour = matches!(flavour, 1 | 2);
    let mut entity = |rng: &mut Pcg32| {
        if people_flavour {
            people.next(rng)
        } else {
            places.next(rng)
        }
    };
    let length = rng.range(5, 7) as usize;
    let chain: Vec<String> = (0..=length).map(|_| entity(&mut rng)).collect();
    // Each edge: (from, to, a detail drawn with it, e.g. the train line).
    let mut edges: Vec<(String, String, usize)> = chain
        .windows(2)
        .map(|w| (w[0].clone(), w[1].clone(), rng.index(LINES.len())))
        .collect();
    while edges.len() < units {
        let len = rng.range(1, 5) as usize;
        let nodes: Vec<String> = (0..=len).map(|_| entity(&mut rng)).collect();
        for w in nodes.windows(2) {
            edges.push((w[0].clone(), w[1].clone(), rng.index(LINES.len())));
        }
    }
    rng.shuffle(&mut edges);

    let (intro, statement, question, follow): (&str, Statement, String, Follow) =
        match flavour {
            0 => (
                "Below are the forwarding rules of a courier network. A place with no rule keeps the parcels it receives.",
                |a, b, _| format!("Parcels that arrive at {a} are forwarded the same day to {b}."),
                format!(
                    "A parcel is handed in at {}. Following the forwarding rules, at which place does it finally stay? Answer with the place name only.",
                    chain[0]
                ),
                Follow::ToEnd,
            ),
            1 => (
                "Below are the reporting lines of a large organisation, one per employee who has a manager.",
                |a, b, _| format!("{a} reports to {b}."),
                format!(
                    "Follow the reporting line up from {}: who is at the top of it, reporting to no one? Answer with the full name only.",
                    chain[0]
                ),
                Follow::ToEnd,
            ),
            2 => (
                "Below are the reporting lines of a large organisation, one per employee who has a manager.",
                |a, b, _| format!("The manager of {a} is {b}."),
                format!(
                    "Who is the manager of the manager of the manager of {}? Answer with the full name only.",
                    chain[0]
                ),
                Follow::Steps(3),
            ),
            _ => (
                "Below is a list of train legs of a regional network. From each station, exactly one train leaves, unless the station is a terminus.",
                |a, b, line| format!("The {line} line train from {a} runs on to {b}."),
                format!(
                    "You board at {} and stay on the train for exactly four legs. At which station are you then? Answer with the station name only.",
                    chain[0]
                ),
                Follow::Steps(4),
            ),
        };
    let answer = match follow {
        Follow::ToEnd => chain[length].clone(),
        Follow::Steps(n) => chain[n].clone(),
    };
    let mut prompt = format!("{intro} Read them, then answer the question that follows them.\n\n");
    for (a, b, line) in &edges {
        prompt.push_str(&statement(a, b, LINES[*line]));
        prompt.push('\n');
    }
    prompt.push_str("\nQuestion: ");
    prompt.push_str(&question);
    Rendered {
        prompt,
        answer: Answer::Text(answer),
    }
}
