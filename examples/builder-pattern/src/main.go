// wordcount counts the words on its command line, or in a built-in sentence.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	text := "the builder pattern compiles in one image and ships in another"
	if len(os.Args) > 1 {
		text = strings.Join(os.Args[1:], " ")
	}
	fmt.Printf("builder pattern: %d words\n", len(strings.Fields(text)))
}
