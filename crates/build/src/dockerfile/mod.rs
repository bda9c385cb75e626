//! The Dockerfile language: parsed into stages of instructions (ast.rs,
//! parse.rs), words expanded as BuildKit's shell lexer does (words.rs),
//! and `.dockerignore` patterns (ignore.rs).

pub mod ast;

pub use ast::*;
