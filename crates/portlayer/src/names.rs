//! Docker-style random names ("adjective_surname") for containers created without one.

use rand::seq::SliceRandom;

const LEFT: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "confident",
    "cool",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elastic",
    "elegant",
    "epic",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "happy",
    "hopeful",
    "infallible",
    "inspiring",
    "jolly",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "relaxed",
    "reverent",
    "romantic",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "youthful",
    "zealous",
    "zen",
];

const RIGHT: &[&str] = &[
    "agnesi",
    "albattani",
    "allen",
    "archimedes",
    "babbage",
    "banach",
    "bardeen",
    "bell",
    "bhabha",
    "boole",
    "borg",
    "bose",
    "brahmagupta",
    "cannon",
    "carson",
    "cerf",
    "chandrasekhar",
    "curie",
    "darwin",
    "dijkstra",
    "easley",
    "einstein",
    "euclid",
    "euler",
    "fermat",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "hodgkin",
    "hopper",
    "hypatia",
    "jang",
    "johnson",
    "kalam",
    "kepler",
    "khorana",
    "knuth",
    "lamport",
    "lovelace",
    "mayer",
    "mccarthy",
    "meitner",
    "mendel",
    "mirzakhani",
    "morse",
    "newton",
    "noether",
    "pascal",
    "pasteur",
    "perlman",
    "pike",
    "poincare",
    "ramanujan",
    "ritchie",
    "shannon",
    "sinoussi",
    "stonebraker",
    "swartz",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wescoff",
    "wiles",
    "williams",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

/// A random name; `taken` says whether a candidate is in use.
pub fn random_name(taken: impl Fn(&str) -> bool) -> String {
    let mut rng = rand::thread_rng();
    for attempt in 0..64 {
        let l = LEFT.choose(&mut rng).copied().unwrap_or("vic");
        let r = RIGHT.choose(&mut rng).copied().unwrap_or("container");
        let name = if attempt < 8 {
            format!("{l}_{r}")
        } else {
            format!("{l}_{r}{}", attempt)
        };
        if !taken(&name) {
            return name;
        }
    }
    format!("vic_{}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avoids_taken_names() {
        let first = random_name(|_| false);
        assert!(first.contains('_'));
        let other = random_name(|n| n == first);
        assert_ne!(other, first);
    }
}
