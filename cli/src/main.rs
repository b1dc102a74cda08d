//! The `sturdy` command line (placeholder until `sturdy run` lands).

fn main() {
    println!("sturdy: not yet");
}
