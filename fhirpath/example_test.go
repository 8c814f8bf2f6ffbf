package fhirpath_test

import (
	"fmt"

	"fhirdeid/fhir/model"
	"fhirdeid/fhir/typed"
	"fhirdeid/fhirpath"
	"fhirdeid/jsontree"
)

func Example() {
	m := model.Get(model.R4)
	root, err := jsontree.Parse([]byte(`{"resourceType":"Patient","name":[{"use":"official","given":["Peter","James"]},{"use":"nickname","given":["Jim"]}],"birthDate":"1974-12-25"}`))
	if err != nil {
		panic(err)
	}
	if err := typed.Annotate(root, m); err != nil {
		panic(err)
	}
	e, err := fhirpath.Compile("Patient.name.where(use = 'official').given",
		fhirpath.WithModel(m), fhirpath.WithContextType("Patient"))
	if err != nil {
		panic(err)
	}
	items, err := e.Evaluate(root, nil)
	if err != nil {
		panic(err)
	}
	for _, it := range items {
		v, _ := it.Value()
		fmt.Println(typed.Location(it.Node()), it.TypeName(), v)
	}
	// Output:
	// Patient.name[0].given[0] string Peter
	// Patient.name[0].given[1] string James
}

func ExampleAnonymizerFunctions() {
	m := model.Get(model.R4)
	root, _ := jsontree.Parse([]byte(`{"resourceType":"Patient","birthDate":"1974-12-25","contained":[{"resourceType":"Patient","birthDate":"1950-01-01"}]}`))
	_ = typed.Annotate(root, m)
	e := fhirpath.MustCompile("nodesByType('date')", fhirpath.WithFunctions(fhirpath.AnonymizerFunctions()...))
	items, _ := e.Evaluate(root, nil)
	for _, it := range items {
		fmt.Println(typed.Location(it.Node()))
	}
	// Output:
	// Patient.birthDate
}

func ExampleCompile_error() {
	_, err := fhirpath.Compile("Patient.nmae", fhirpath.WithModel(model.Get(model.R4)), fhirpath.WithContextType("Patient"))
	fmt.Println(err)
	_, err = fhirpath.Compile("Patient.name.where(use = 'official'")
	fmt.Println(err)
	// Output:
	// fhirpath: 1:9: unknown element nmae on Patient
	// fhirpath: 1:36: expected ")", found end of expression
}
