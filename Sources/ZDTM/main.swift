print("zdtm")
