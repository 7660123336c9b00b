// greet is compiled by a toolchain container with the source bind-mounted,
// so no source file ever lands in an image layer.
package main

import "fmt"

func main() {
	fmt.Println("built with the source mounted, not copied")
}
