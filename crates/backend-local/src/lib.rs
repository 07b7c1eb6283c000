//! The local backend (in progress).
