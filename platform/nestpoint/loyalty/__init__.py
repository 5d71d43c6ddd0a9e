"""The loyalty programme's configuration: points policy, earn rules and the tier ladder."""
