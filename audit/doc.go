// Package audit checks de-identified FHIR output for the direct identifiers
// of its raw input, without keeping the identifiers.
//
// A Collector reads raw resources (concurrently, while they are
// de-identified) and keeps, for every direct identifier — the parts and
// wholes of every HumanName, telecom values and e-mail addresses,
// Identifier.value, address lines, cities, districts and postal codes, birth
// and death dates, Attachment.url — a keyed hash (SipHash-2-4 under a random
// key that never leaves the process) of its normalised tokens, the kind of
// identifier and the people it belongs to. Scanners then read the
// de-identified resources: every string value, and the text of every base64
// "data" value, cut into tokens the same way (runs of letters and digits,
// lower-cased, punctuation dropped), matched token by token and phrase by
// phrase. Matching rules keep short and common words from drowning the
// signal: only distinctive values are collected, and a single name part, a
// city or a postal code counts only when another identifier of the same
// person is found in the same resource (see the README's "How matches are
// chosen").
//
// Collection and scanning can go on together, as in the pipeline, which
// collects each raw resource and scans its de-identified form while a file
// streams through the engine (CollectParsed, FileScan.ScanTree, on the
// engine's trees): a FileScan remembers hashes of the file's tokens, so that
// FileScan.Complete can tell whether an identifier collected after the scan
// began could be in the file, and the file must be scanned again.
//
// Reports hold counts, member paths and file positions, never a value.
package audit
