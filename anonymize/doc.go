// Package anonymize de-identifies FHIR resources with configurations in the
// format of Microsoft's FHIR anonymizer (Tools-for-Health-Data-Anonymization),
// and aims at producing the same output for the same configuration and keys.
// The specification is anonymizer-spec.md of the project's shared material;
// section numbers (§) below refer to it.
//
// # Configuration
//
// ParseConfig and LoadConfig read a configuration (JSON, or YAML with the
// same keys), validate it in the order of §1.5 and fill in the default
// parameters of §1.4. FHIRPath expressions are compiled through an injected
// PathCompiler; FHIRPathCompiler is the one backed by package fhirpath. A
// Config is immutable. Problems are *ConfigError values that name the file
// line, the rule number, the method and the expression column, never a key.
//
// # Value-level methods
//
// The methods' algorithms are pure functions that the engine calls on one
// value at a time: Hasher (cryptoHash and the Reference id rules of §2.5),
// Encryptor (encrypt, and Decrypt for authorised re-identification),
// DateShiftOffset and ShiftDate (dateShift), RedactDate, RedactAge and
// RedactPostalCode (redact), Perturb with PerturbNoise (perturb, with
// deterministic keyed noise instead of a global random generator),
// SubstitutePrimitive and SubstituteComplex (substitute), and Generalize with
// a CaseEvaluator (generalize). SecurityLabels gives the meta.security
// Codings of §4 for the Operations a resource went through.
//
// # Engine
//
// An Engine is built from a Config (NewEngine). It holds per-rule compiled
// FHIRPath expressions and the keyed helpers (Hasher, Encryptor); it does no
// I/O, has no global state, and is safe for concurrent use: every call keeps
// its state (visited set, caches, operations) in its own values.
//
//	(*Engine).Anonymize(ctx, root *jsontree.Node, FileContext) (Stats, error)
//	(*Engine).AnonymizeJSON(ctx, data []byte, FileContext) ([]byte, Stats, error)
//
// "Today", for the age-over-89 checks, comes from the context (WithNow);
// without it the local date is used, as the reference implementation does.
// FileContext carries the input file and folder names that the file and
// folder date-shift scopes key on.
//
// One call processes one top-level resource (§2.1, §2.2):
//
//  1. The tree is typed (package fhir/typed) with the FHIR model of the
//     configuration's release. Input errors are never skipped. String values
//     are trimmed of leading and trailing white space, as the reference
//     implementation's JSON reader does (EngineOptions.PreserveWhitespace
//     turns this off).
//  2. Resources are processed in pre-order: the top-level resource, then
//     each nested resource (contained, Bundle.entry.resource,
//     Parameters.parameter.resource, ...) after its container's rules ran
//     (§3.4). Each resource applies, in configuration order, the rules whose
//     resource type prefix is its type, empty, "Resource" or
//     "DomainResource".
//  3. A rule's matches come from the nodesByType/nodesByName fast path over
//     per-resource caches built before the resource's rules run (§3.2, §3.3),
//     from the resource itself for a bare type rule, or from evaluating the
//     compiled expression with the resource as focus. An expression that
//     begins with nodesByType/nodesByName and goes on
//     (nodesByType('Coding').where(...).display) is evaluated with that
//     call's result taken from the caches (fhirpath's EvaluateWithHead),
//     unless a substitute changed the tree since they were built.
//  4. Each match is processed recursively: the method is applied to the node
//     and then to its descendants, skipping nested resources. One visited set
//     per top-level call makes the first rule win for every node, including
//     keep (§2.2).
//     When every rule of a resource type has one of the shapes whose
//     matches a node's typing, parent and member path decide (nodesByType,
//     nodesByName, either followed by a name, a member path, the bare type,
//     nodesByType('T').where(criteria on one primitive member).name) and no
//     method reshapes the tree, steps 3 and 4 are done at once (dispatch.go):
//     one walk of the element list that typing made finds each element's
//     effective rule (the first rule that matches it or an ancestor), and
//     each rule is then applied to its elements in the order steps 3 and 4
//     would, so that outputs and errors are the same.
//  5. After its nested resources, every resource that is not contained gets
//     the security labels of its own and its nested resources' operations
//     (§4).
//  6. Emptied elements are pruned bottom-up, keeping resources and the
//     alignment of primitive arrays with their "_name" arrays (§2.2). A
//     resource that was dispatched, lost no value and held no empty object
//     or array has nothing to prune.
//
// Date-shift scope "patient" (a fhirdeid extension, patientshift.go) shifts
// every date of the resources in one patient's compartment by the same
// keyed, non-zero number of days, keeping times of day, so that intervals
// survive. Options.Keys replaces the configuration's keys with those of a
// key file or the environment (package anonymize/keys); Config.UsedKeys,
// RandomKeys and KeyFingerprints say which keys the rules use, which of
// them were drawn at random, and their fingerprints for run reports.
//
// Programs can add methods of their own (EngineOptions.CustomMethods), as
// the reference implementation's library API allows custom processors
// (§2.11).
//
// A *ProcessingError (a generalize evaluation failure, a perturb of a value
// that is not a number) makes the call fail, or, with processingErrors
// "skip", replaces the whole top-level resource by an empty one labelled
// REDACTED (§2.10). Configuration errors found while processing (an unknown
// method that applies, generalize on a complex element) are *ConfigError
// values and are never skipped.
//
// Errors and statistics never contain values from resources: they name the
// rule number, the method, the resource type and the element's location.
package anonymize
