//! The image client (in progress).
