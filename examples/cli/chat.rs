//! `-i`: an interactive conversation, one user turn per stdin line.

use std::io::{BufRead, Write};

use entropix_sampler::llama::{ChatMessage, Context, Model, SamplerChain};

use crate::args::Args;
use crate::generate::{print_summary, Generator};
use crate::trace::TraceWriter;

/// Reads turns until EOF or "/exit". Each turn renders the whole
/// conversation with the chat template and decodes only the new part.
pub fn run(args: &Args, model: &Model, ctx: &mut Context<'_>, chain: &mut SamplerChain, mut trace: Option<&mut TraceWriter>) -> Result<(), String> {
    let use_chat = !args.no_chat && model.chat_template().is_some();
    let mut messages: Vec<ChatMessage> = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage { role: "system".into(), content: system.clone() });
    }
    let mut rendered_so_far = String::new();
    let mut n_past = 0i32;
    let stdin = std::io::stdin();
    eprintln!("entropix: interactive mode; an empty line or /exit ends it");
    loop {
        eprint!("\n> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() || line == "/exit" {
            break;
        }
        messages.push(ChatMessage { role: "user".into(), content: line.to_string() });
        let full = if use_chat { model.apply_chat_template(&messages, true).map_err(|e| e.to_string())? } else { format!("{rendered_so_far}{line}\n") };
        // `rendered_so_far` is exactly the text in the KV cache. When the
        // template re-renders history differently, start over from scratch.
        let new_part = match full.strip_prefix(rendered_so_far.as_str()) {
            Some(rest) => rest.to_string(),
            None => {
                ctx.clear();
                n_past = 0;
                full.clone()
            }
        };
        let tokens = model.tokenize(&new_part, n_past == 0, use_chat).map_err(|e| e.to_string())?;
        crate::chain_builder::accept_prompt(chain, &tokens, args);
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let mut generator = Generator::new(ctx, chain, trace.as_deref_mut());
        generator.n_past = n_past;
        let (reply_tokens, stats) = generator.run(&tokens, args.n_predict, &mut out).map_err(|e| e.to_string())?;
        n_past = generator.n_past;
        let _ = writeln!(out);
        drop(out);
        let reply: String = String::from_utf8_lossy(&reply_tokens.iter().flat_map(|&t| model.token_bytes(t, false)).collect::<Vec<u8>>()).into_owned();
        messages.push(ChatMessage { role: "assistant".into(), content: reply.clone() });
        // The KV cache now holds the prompt and the reply (the end-of-turn
        // token was sampled but not decoded); the next turn's rendering
        // re-adds the template's closing text after it.
        rendered_so_far = format!("{full}{reply}");
        if !args.quiet {
            print_summary(&stats, chain);
        }
    }
    if let Some(t) = trace {
        t.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}
