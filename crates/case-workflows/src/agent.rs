//! What an agent does with a case: read the queue and the shared view, claim and
//! release, decide, note, unmask.
