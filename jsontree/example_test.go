package jsontree_test

import (
	"fmt"

	"fhirdeid/jsontree"
)

func Example() {
	var p jsontree.Parser // one per worker; reused for every document
	root, err := p.Parse([]byte(`{"resourceType":"Patient","name":[{"family":"Doe","given":["Jo"]}],"multipleBirthInteger":2,"weight":70.50}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	name := root.Get("name").Children()[0]
	name.Get("family").SetString("REDACTED")
	name.Get("given").Detach()
	name.Set("text", jsontree.NewString("<b>x</b> & y"))
	fmt.Println(string(root.AppendJSON(nil)))
	fmt.Println(root.Get("weight").Value(), name.Get("family").Path())
	// Output:
	// {"resourceType":"Patient","name":[{"family":"REDACTED","text":"<b>x</b> & y"}],"multipleBirthInteger":2,"weight":70.50}
	// 70.50 /name/0/family
}

func ExampleSyntaxError() {
	_, err := jsontree.Parse([]byte("{\n  \"name\": [{\"given\": [\"Jo\"], \"given\": []}]\n}"))
	fmt.Println(err)
	// Output:
	// jsontree: duplicate key at /name/0/given (line 2, column 30, offset 31)
}

func ExampleNode_AppendIndent() {
	root, _ := jsontree.Parse([]byte(`{"a":[1,{"b":null}],"c":{}}`))
	fmt.Println(string(root.AppendIndent(nil, "", "  ")))
	// Output:
	// {
	//   "a": [
	//     1,
	//     {
	//       "b": null
	//     }
	//   ],
	//   "c": {}
	// }
}
