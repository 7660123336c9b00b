//! cargo +nightly fuzz run expand — the shell-word lexer on any word.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(word) = std::str::from_utf8(data) else { return };
    let env = vec![("A".to_string(), "a b".to_string()), ("E".to_string(), String::new())];
    for escape in ['\\', '`'] {
        let _ = kiln_dockerfile::expand_word(word, &env, escape);
        let _ = kiln_dockerfile::shell::Lexer::new(escape).process_words(word, &env);
    }
});
