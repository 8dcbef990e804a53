//! Parses a channel given on the command line (default `{:room, 42}`) and
//! prints its three canonical encodings.
//!
//! ```text
//! cargo run -p tidings-core --example channel -- '{:doc, "abc-123", "v2"}'
//! ```

use std::process::ExitCode;

use tidings_core::Channel;

fn main() -> ExitCode {
    let text = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "{:room, 42}".to_owned());
    match Channel::parse(&text) {
        Ok(ch) => {
            let topic: Vec<String> = ch
                .topic()
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            println!("text:  {ch}");
            println!("json:  {}", ch.to_json());
            println!("topic: {}", topic.join(" "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
