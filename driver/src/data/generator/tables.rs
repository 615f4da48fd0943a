//! Aggregation over a table or a log: sum, count, maximum or net balance over the rows that match.

use std::fmt::Write as _;

use super::rng::Pcg32;
use super::vocab::{LOG_MESSAGES, PRODUCTS, REGIONS, SERVICES};
use super::Rendered;
use crate::data::answers::Answer;

pub fn render(rng: Pcg32, flavour: usize, units: usize) -> Rendered {
    match flavour {
        0 => orders(rng, units),
        1 => log(rng, units, LogQuestion::ErrorCount),
        2 => log(rng, units, LogQuestion::MaxLatency),
        _ => ledger(rng, units),
    }
}

fn finish(intro: &str, body: String, question: String, answer: i64) -> Rendered {
    Rendered {
        prompt: format!("{intro}\n\n{body}\nQuestion: {question} Answer with the number only."),
        answer: Answer::Number(answer),
    }
}

/// Orders table; the total quantity of one product in one region.
fn orders(mut rng: Pcg32, units: usize) -> Rendered {
    let region = rng.pick(REGIONS);
    let product = rng.pick(PRODUCTS);
    let mut id = rng.range(100_000, 400_000);
    let mut day = rng.range(1, 5);
    let mut body = String::from("order_id,date,region,product,quantity,unit_price_eur\n");
    let mut total = 0;
    for _ in 0..units {
        id += rng.range(1, 9);
        if rng.chance(30) {
            day += 1;
        }
        // One row in eight is of the asked combination, so the sum runs over several rows.
        let (r, p) = if rng.chance(12) {
            (region, product)
        } else {
            (rng.pick(REGIONS), rng.pick(PRODUCTS))
        };
        let quantity = rng.range(1, 60);
        let price = rng.range(3, 250);
        if r == region && p == product {
            total += quantity;
        }
        let _ = writeln!(
            body,
            "{id},2024-{:02}-{:02},{r},{p},{quantity},{price}.{:02}",
            3 + (day - 1) / 28,
            1 + (day - 1) % 28,
            rng.below(100)
        );
    }
    finish(
        "Below is an export of the orders table of a parts supplier, as CSV with a header row. Read it, then answer the question that follows it.",
        body,
        format!("What is the total quantity of {product} ordered in the {region} region, summed over all matching orders?"),
        total,
    )
}

enum LogQuestion {
    ErrorCount,
    MaxLatency,
}

/// An application log; the number of ERROR lines of one service, or its highest latency.
fn log(mut rng: Pcg32, units: usize, question: LogQuestion) -> Rendered {
    let service = rng.pick(SERVICES);
    let mut seconds = rng.range(0, 20_000);
    let mut body = String::new();
    let mut errors = 0;
    let mut max_latency = 0;
    for _ in 0..units {
        seconds += rng.range(1, 40);
        let s = if rng.chance(30) {
            service
        } else {
            rng.pick(SERVICES)
        };
        let level = match rng.below(100) {
            0..=64 => "INFO",
            65..=81 => "WARN",
            _ => "ERROR",
        };
        let latency = if rng.chance(10) {
            rng.range(900, 4000)
        } else {
            rng.range(3, 600)
        };
        if s == service {
            if level == "ERROR" {
                errors += 1;
            }
            max_latency = max_latency.max(latency);
        }
        let _ = writeln!(
            body,
            "2024-06-11T{:02}:{:02}:{:02}Z service={s} level={level} latency_ms={latency} msg=\"{}\"",
            seconds / 3600 % 24,
            seconds / 60 % 60,
            seconds % 60,
            rng.pick(LOG_MESSAGES)
        );
    }
    let (q, answer) = match question {
        LogQuestion::ErrorCount => (
            format!("How many lines with level=ERROR does the service `{service}` log?"),
            errors,
        ),
        LogQuestion::MaxLatency => (
            format!(
                "What is the highest latency_ms of any line logged by the service `{service}`?"
            ),
            max_latency,
        ),
    };
    finish(
        "Below is an application log, one event per line. Read it, then answer the question that follows it.",
        body,
        q,
        answer,
    )
}

/// A ledger of credits and debits; the net balance of one account.
fn ledger(mut rng: Pcg32, units: usize) -> Rendered {
    let accounts: Vec<String> = (0..6)
        .map(|_| format!("ACC-{}", rng.range(1000, 9999)))
        .collect();
    let account = accounts[rng.index(accounts.len())].clone();
    let mut txn = rng.range(5_000, 9_000);
    let mut body = String::from("txn_id,account,type,amount_eur,memo\n");
    let mut balance = 0;
    for _ in 0..units {
        txn += 1;
        let a = &accounts[rng.index(accounts.len())];
        let credit = rng.chance(55);
        let amount = rng.range(5, 900);
        if *a == account {
            balance += if credit { amount } else { -amount };
        }
        let _ = writeln!(
            body,
            "T{txn},{a},{},{amount},{}",
            if credit { "credit" } else { "debit" },
            rng.pick(&["invoice", "refund", "transfer", "fee", "payroll", "supplies"])
        );
    }
    finish(
        "Below is a ledger of transactions, as CSV with a header row. Read it, then answer the question that follows it.",
        body,
        format!("What is the net balance of account {account} over these transactions (credits minus debits, in euros)?"),
        balance,
    )
}
