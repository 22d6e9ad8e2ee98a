//! What the subscriber does with a case: open it, ask for a code, prove identity,
//! explain, add evidence, appeal, complain, cancel, and read its status.
