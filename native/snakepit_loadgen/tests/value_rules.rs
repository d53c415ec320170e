//! The load generator's glob matcher against the globs of the value rules
//! table (`priv/catalog/value_rules.json`): a pattern means here what it
//! means in a Python worker (`fnmatch.fnmatchcase`, checked against the same
//! table by the Python tests).

use snakepit_loadgen::glob::Glob;

const RULES: &str = include_str!("../../../priv/catalog/value_rules.json");

#[test]
fn globs_follow_the_table() {
    let rules: serde_json::Value = serde_json::from_str(RULES).expect("value_rules.json is JSON");
    let globs = rules["globs"].as_array().expect("a list of globs");
    assert!(globs.len() >= 10);
    let wrong: Vec<String> = globs
        .iter()
        .filter_map(|case| {
            let (pattern, name) = (case["pattern"].as_str()?, case["name"].as_str()?);
            let want = case["match"].as_bool()?;
            (Glob::new(pattern).matches(name) != want)
                .then(|| format!("{pattern} ~ {name}: want {want}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
