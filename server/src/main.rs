fn main() {
    eprintln!("ketch: not built yet");
    std::process::exit(1);
}
