//! The JSON Lines journal writer.
