//! Reading generated code: a Python module of small integer functions and a `main()` that chains
//! a few of them; the question asks what `main()` returns. The generator evaluates the code itself,
//! with Python's semantics for `%` and `//`.

use std::fmt::Write as _;

use super::rng::Pcg32;
use super::vocab::{NOUNS, VERBS};
use super::{position, Rendered, UniqueNames};
use crate::data::answers::Answer;

enum Body {
    /// `acc = x; for i in range(k): acc = (acc * a + i) % m`
    Loop { k: i64, a: i64, m: i64 },
    /// `if x % a == 0: return x // a + b; return x * c - d`
    Branch { a: i64, b: i64, c: i64, d: i64 },
    /// `values = [...]; return values[x % len] + x`
    Table { values: Vec<i64> },
    /// `return (f(x + a) + g(x)) % 1000`, calling two functions defined earlier
    Call { f: usize, g: usize, a: i64 },
}

struct Function {
    name: String,
    body: Body,
}

fn py_mod(a: i64, m: i64) -> i64 {
    a.rem_euclid(m)
}

fn py_floordiv(a: i64, b: i64) -> i64 {
    // b > 0 everywhere here, where floor division and Euclidean division agree.
    a.div_euclid(b)
}

fn eval(functions: &[Function], index: usize, x: i64) -> i64 {
    match &functions[index].body {
        Body::Loop { k, a, m } => {
            let mut acc = x;
            for i in 0..*k {
                acc = py_mod(acc * a + i, *m);
            }
            acc
        }
        Body::Branch { a, b, c, d } => {
            if py_mod(x, *a) == 0 {
                py_floordiv(x, *a) + b
            } else {
                x * c - d
            }
        }
        Body::Table { values } => values[py_mod(x, values.len() as i64) as usize] + x,
        Body::Call { f, g, a } => py_mod(eval(functions, *f, x + a) + eval(functions, *g, x), 1000),
    }
}

/// Draws the next function; a call only calls functions that call nothing, so the code is at
/// most two calls deep.
fn draw(rng: &mut Pcg32, names: &mut UniqueNames, earlier: &[Function]) -> Function {
    let name = names.next(rng);
    let leaves: Vec<usize> = (0..earlier.len())
        .filter(|&i| !matches!(earlier[i].body, Body::Call { .. }))
        .collect();
    let kind = if leaves.len() >= 2 {
        rng.below(4)
    } else {
        rng.below(3)
    };
    let body = match kind {
        0 => Body::Loop {
            k: rng.range(2, 5),
            a: rng.range(2, 7),
            m: rng.range(31, 199),
        },
        1 => Body::Branch {
            a: rng.range(2, 5),
            b: rng.range(1, 30),
            c: rng.range(2, 6),
            d: rng.range(1, 40),
        },
        2 => Body::Table {
            values: (0..rng.range(3, 6)).map(|_| rng.range(-20, 90)).collect(),
        },
        _ => Body::Call {
            f: leaves[rng.index(leaves.len())],
            g: leaves[rng.index(leaves.len())],
            a: rng.range(1, 9),
        },
    };
    Function { name, body }
}

fn write_function(out: &mut String, functions: &[Function], f: &Function) {
    let _ = writeln!(out, "def {}(x):", f.name);
    match &f.body {
        Body::Loop { k, a, m } => {
            let _ = write!(
                out,
                "    acc = x\n    for i in range({k}):\n        acc = (acc * {a} + i) % {m}\n    return acc\n"
            );
        }
        Body::Branch { a, b, c, d } => {
            let _ = write!(
                out,
                "    if x % {a} == 0:\n        return x // {a} + {b}\n    return x * {c} - {d}\n"
            );
        }
        Body::Table { values } => {
            let list: Vec<String> = values.iter().map(i64::to_string).collect();
            let _ = write!(
                out,
                "    values = [{}]\n    return values[x % {}] + x\n",
                list.join(", "),
                values.len()
            );
        }
        Body::Call { f, g, a } => {
            let _ = writeln!(
                out,
                "    return ({}(x + {a}) + {}(x)) % 1000",
                functions[*f].name, functions[*g].name
            );
        }
    }
    out.push('\n');
}

pub fn render(mut rng: Pcg32, flavour: usize, units: usize) -> Rendered {
    let units = units.max(2);
    let steps = 3 + flavour % 3;
    let start = rng.range(2, 40);
    // Which functions main() calls, as fractions of the module, so both variants draw them alike.
    let picks: Vec<u32> = (0..steps).map(|_| rng.below(1000)).collect();
    let mut names = UniqueNames::new(VERBS, NOUNS, "_");
    names.reserve("main");
    let mut functions: Vec<Function> = Vec::with_capacity(units);
    for _ in 0..units {
        let f = draw(&mut rng, &mut names, &functions);
        functions.push(f);
    }
    let called: Vec<usize> = picks.iter().map(|&p| position(p, units)).collect();

    let mut main = String::from("def main():\n");
    let answer = if flavour == 3 {
        // A loop over the inputs of one function, summed.
        let f = called[0];
        let _ = write!(
            main,
            "    total = 0\n    for n in range(1, 4):\n        total += {}(n * {start})\n    return total\n",
            functions[f].name
        );
        (1..4).map(|n| eval(&functions, f, n * start)).sum()
    } else {
        let _ = writeln!(main, "    value = {start}");
        let mut value = start;
        for &f in &called {
            let _ = writeln!(main, "    value = {}(value)", functions[f].name);
            value = eval(&functions, f, value);
        }
        main.push_str("    return value\n");
        value
    };

    let mut prompt = String::from(
        "Below is a Python module. Read it and work out, step by step if you need to, what calling `main()` returns.\n\n```python\n",
    );
    for f in &functions {
        write_function(&mut prompt, &functions, f);
    }
    prompt.push_str(&main);
    prompt.push_str("```\n\nQuestion: What does `main()` return? Answer with the integer only.");
    Rendered {
        prompt,
        answer: Answer::Number(answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_semantics_for_negative_operands() {
        assert_eq!(py_mod(-7, 3), 2);
        assert_eq!(py_floordiv(-7, 2), -4);
        let functions = vec![
            Function {
                name: "a".into(),
                body: Body::Branch {
                    a: 2,
                    b: 1,
                    c: 3,
                    d: 10,
                },
            },
            Function {
                name: "b".into(),
                body: Body::Table {
                    values: vec![5, -5, 7],
                },
            },
            Function {
                name: "c".into(),
                body: Body::Call { f: 0, g: 1, a: 1 },
            },
        ];
        // a(-4) = -4 // 2 + 1 = -1; b(-5) = values[-5 % 3 = 1] + -5 = -10; (a + b) % 1000 = 989
        assert_eq!(eval(&functions, 2, -5), 989);
        // loop: acc = (acc * 3 + i) % 7 over i = 0, 1 from x = 4: 12 % 7 = 5; 16 % 7 = 2
        let looped = [Function {
            name: "l".into(),
            body: Body::Loop { k: 2, a: 3, m: 7 },
        }];
        assert_eq!(eval(&looped, 0, 4), 2);
    }
}
