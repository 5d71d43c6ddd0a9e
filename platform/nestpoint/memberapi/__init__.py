"""The member API: tokens that act for one member, and what a member sees of themselves."""
