fn main() {
    eprintln!("findings-bridge: CLI not assembled yet");
    std::process::exit(2);
}
