// The catalog is embedded with include_str!; rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-changed=../../priv/catalog/telemetry_catalog.json");
}
