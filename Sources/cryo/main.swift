print("cryo")
