//! pip
